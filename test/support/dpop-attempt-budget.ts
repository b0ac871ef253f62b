/**
 * The DPoP tests' bound on retries: an interceptor placed after the auth interceptor (next to
 * the wire) counts the attempts of each call (attempts of one call share its signal). Past
 * `max` — default 2: the call and its one retry — the attempt is not sent: it fails with
 * `Code.ResourceExhausted` naming the bound, which the auth interceptor never retries. A bug
 * that lets the interceptor retry without end (e.g. on every nonce challenge) then fails the
 * test at once with that message, instead of spinning until an outer timeout.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

export interface AttemptBudget {
  readonly interceptor: Interceptor;
  /** Calls that ran past the bound (0 in a passing test). */
  readonly overruns: number;
}

/** Wall-clock bound for one DPoP test (node:test `timeout`): generous on a loaded machine, never reached by a passing test. */
export const DPOP_TEST_TIMEOUT_MS = 180_000;

export function attemptBudget(max = 2): AttemptBudget {
  const attempts = new WeakMap<AbortSignal, number>();
  let overruns = 0;
  const interceptor: Interceptor = (next) => async (req) => {
    const attempt = (attempts.get(req.signal) ?? 0) + 1;
    attempts.set(req.signal, attempt);
    if (attempt > max) {
      if (attempt === max + 1) overruns += 1;
      throw new ConnectError(
        `test bound: attempt ${attempt} of one call to ${req.url} (at most ${max}: a retry loop?)`,
        Code.ResourceExhausted,
      );
    }
    return next(req);
  };
  return {
    interceptor,
    get overruns() {
      return overruns;
    },
  };
}

/** The node:test options of every DPoP test: a wall-clock bound that fails the test with node's "timed out" message. */
export const bounded = { timeout: DPOP_TEST_TIMEOUT_MS } as const;

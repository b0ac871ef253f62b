/**
 * One refresh at a time per manager: start it (or join the one in flight), run the
 * exchange under the store's lock, and turn its result into the manager's next input —
 * new tokens, a scheduled retry, re-login required, or the configuration refused.
 *
 * A refusal of the configuration (see misconfiguration.ts) is final only while the
 * configuration has never worked in this process: once the identity provider has granted
 * tokens to these options, the same answer did not come from a change of them (a
 * provider's deploy serving 404 for a minute) and is retried with backoff.
 */
import { ConfigurationError, ReauthRequiredError, TokenRefreshError } from "./errors.js";
import { describeFailure, summarizeFailure } from "./failure.js";
import { type RequestSettings, tokenRequestMisconfiguration } from "./misconfiguration.js";
import { backoffDelay, type BackoffOptions, DEMAND_RETRY_MS } from "./policy.js";
import { type ExchangeDeps, exchangeUnderLock } from "./token-exchange.js";
import type { Machine } from "./token-machine.js";
import { type Flight, type Input, type RefreshOutcome, usableAt } from "./token-state.js";
import type { LockHold, RefreshReason, StoredTokens } from "./types.js";

export interface RefreshDeps {
  readonly machine: Machine;
  readonly exchange: ExchangeDeps;
  readonly locked: <T>(fn: (hold?: LockHold) => Promise<T>) => Promise<T>;
  readonly random: () => number;
  readonly backoff: BackoffOptions | undefined;
  /** The settings a refusal of the configuration is explained with. */
  readonly request: RequestSettings;
}

/** Returns `refresh(reason)`: settles (never rejects) when the refresh is over. */
export function createRefresher({
  machine,
  exchange,
  locked,
  random,
  backoff,
  request,
}: RefreshDeps): (reason: RefreshReason) => Promise<void> {
  // The identity provider granted tokens to this configuration in this process.
  let worked = false;
  const run = async (flight: Flight, held: StoredTokens | undefined, inStore: StoredTokens | undefined) => {
    try {
      await exchange.prepareRequest?.();
      const result = await locked((hold) => exchangeUnderLock(exchange, { reason: flight.reason, held, inStore, hold }));
      if (result.ok) {
        worked ||= !result.outcome.adopted;
        return machine.apply({ type: "refresh-done", flight, outcome: result.outcome, at: machine.monotonic() });
      }
      const misconfiguration = tokenRequestMisconfiguration(result.error, request);
      if (misconfiguration !== undefined) {
        if (!worked) return machine.apply({ type: "misconfigured", flight, error: misconfiguration });
        return machine.apply(failedInput(flight, misconfiguration, result.kept, result.retryAfterMs ?? 0));
      }
      if (result.reauth || result.terminal) return machine.apply(reauthInput(flight, result.error, result.terminal));
      machine.apply(failedInput(flight, result.error, result.kept, result.retryAfterMs ?? 0));
    } catch (error) {
      // The store or its lock failed (our own typed errors): transient.
      machine.apply(failedInput(flight, error, undefined, 0));
    }
  };

  const reauthInput = (flight: Flight, error: Error, terminal: boolean): Input => ({
    type: "reauth",
    flight,
    error:
      error instanceof ReauthRequiredError
        ? error
        : new ReauthRequiredError(
            `The login is no longer valid (${describeFailure(error)}): log in again and pass the result to setTokens()`,
            {
              cause: error,
            },
          ),
    terminal,
    at: machine.monotonic(),
  });

  const failedInput = (flight: Flight, error: unknown, kept: RefreshOutcome | undefined, retryAfterMs: number): Input => {
    const state = machine.state;
    const failures = (state.kind === "refreshing" ? state.failures : 0) + 1;
    const { wall, monotonic } = machine.now();
    // The provider's Retry-After, when it gave one, holds for the schedule and for callers alike.
    const delay = Math.max(backoffDelay(failures, random, backoff), retryAfterMs);
    const expired = !usableAt(kept?.tokens ?? (state.kind === "refreshing" ? state.login?.tokens : undefined), wall);
    return {
      type: "refresh-failed",
      flight,
      at: monotonic,
      retryAt: monotonic + delay,
      demandRetryAt: monotonic + Math.max(DEMAND_RETRY_MS, retryAfterMs),
      ...(kept !== undefined ? { kept } : {}),
      error: new TokenRefreshError(
        `Could not refresh the access token: ${describeFailure(error)}${error instanceof ConfigurationError ? " (these settings worked before in this process: taken to pass)" : ""}${expired ? "; the current token has expired" : ""}; next attempt in ${Math.ceil(delay / 1000)} s`,
        { cause: summarizeFailure(error), retryAt: wall + delay },
      ),
    };
  };

  return (reason) => {
    const current = machine.state;
    if (current.kind === "refreshing") return current.flight.done;
    let finished!: () => void;
    const flight: Flight = {
      reason,
      done: new Promise<void>((resolve) => (finished = resolve)),
      grant: exchange.grant,
      startedAt: machine.monotonic(),
    };
    machine.apply({ type: "refresh-started", flight });
    const started = machine.state;
    if (started.kind !== "refreshing" || started.flight !== flight) return Promise.resolve();
    void run(flight, started.login?.tokens, started.login?.inStore).finally(finished);
    return flight.done;
  };
}

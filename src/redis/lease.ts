/**
 * The lease on a login in Redis: taken with SET NX PX under a random token, renewed while
 * its holder works, given back only by its holder. Durations on the server are Redis' own
 * (PX); waits and renewals here run on the monotonic clock, with clamped, unref'd timers.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { clampDelay } from "../clock.js";
import { TokenStoreError } from "../errors.js";
import { bounded } from "../lock-queue.js";
import type { Commands } from "./command.js";
import { ACQUIRE, RELEASE, RENEW } from "./scripts.js";

export interface LeaseSettings {
  readonly key: string;
  readonly leaseMs: number;
  readonly lockTimeoutMs: number;
  readonly retryMs: number;
}

/** A lease held; whether it still is, only Redis can tell (the scripts check the token). */
export interface Lease {
  readonly token: string;
  /** The lease was taken again after it ran out (see LOAD, CONFIRM): renew it again. */
  retaken(): void;
  /** Stop renewing and give the lease back (never throws: an unreleased lease expires by itself). */
  release(): Promise<void>;
}

/** How long a caller may wait: its signal, a deadline on the monotonic clock (`performance.now()`), the error after it. */
export interface LeaseWait {
  readonly signal: AbortSignal | undefined;
  readonly deadline: number;
  readonly timedOut: () => TokenStoreError;
}

/**
 * Waits for the lease until `wait.deadline` (TokenStoreError "lock-timeout": asked at least
 * once, so the wait may exceed the deadline by one Redis call); rejects with the signal's
 * reason when it aborts, "unavailable" if Redis fails or does not answer within timeoutMs.
 */
export async function acquireLease(commands: Commands, settings: LeaseSettings, wait: LeaseWait): Promise<Lease> {
  const token = crypto.randomUUID(); // the global WebCrypto: importing the entry loads no node:crypto
  const { timedOut } = wait;
  for (;;) {
    let taken: unknown;
    try {
      // Each attempt gets its answer (bounded by timeoutMs): only a Redis that does not answer is "unavailable".
      taken = await bounded(
        commands.run("taking the lease", ACQUIRE, [token, settings.leaseMs]),
        wait.signal,
        Number.POSITIVE_INFINITY,
        timedOut,
      );
    } catch (error) {
      // Unanswered is not undone: the command may still run (ioredis's offline queue, a
      // command in flight). A RELEASE sent after it, on the same connection, lands after it
      // and takes back what it took, so a late lease does not block others for leaseMs.
      void commands.run("giving back a lease taken late", RELEASE, [token]).catch(() => {});
      throw error;
    }
    if (taken === 1) {
      const lease = holdLease(commands, settings, token);
      if (wait.signal?.aborted) {
        await lease.release();
        throw wait.signal.reason;
      }
      return lease;
    }
    const left = wait.deadline - performance.now();
    if (left <= 0) throw timedOut();
    // Jittered so that waiting processes do not ask in lockstep.
    const pause = Math.min(settings.retryMs * (0.5 + Math.random()), left);
    await bounded(sleep(clampDelay(pause), undefined, { ref: false }), wait.signal, Number.POSITIVE_INFINITY, timedOut);
  }
}

/** `lock-timeout` after `waited` ms. */
export function leaseTimeout(settings: LeaseSettings, waited: number): TokenStoreError {
  return new TokenStoreError(
    "lock-timeout",
    `Waited ${Math.round(waited)} ms for the lease on Redis key "${settings.key}": another holder has it ` +
      `(a refresh that takes long, in this process or another, or a lease left by a process that died: it ` +
      `expires after leaseMs). Raise lockTimeoutMs, or check the processes sharing this key.`,
  );
}

function holdLease(commands: Commands, settings: LeaseSettings, token: string): Lease {
  let released = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let renewing = true;
  // Three renewals per lease: one may go unanswered and the lease still holds.
  const every = Math.max(settings.leaseMs / 3, 10);
  const renew = async () => {
    // 0: the lease is gone (it ran out while this process stalled): stop, the scripts fence us off.
    const extended = await commands.run("renewing the lease", RENEW, [token, settings.leaseMs]).catch(() => 1);
    renewing = extended === 1 && !released;
    if (renewing) schedule();
  };
  const schedule = () => {
    timer = setTimeout(() => void renew(), clampDelay(every));
    timer.unref?.();
  };
  schedule();
  return {
    token,
    retaken() {
      if (renewing || released) return;
      renewing = true;
      schedule();
    },
    async release() {
      released = true;
      clearTimeout(timer);
      await commands.run("releasing the lease", RELEASE, [token]).catch(() => {});
    },
  };
}

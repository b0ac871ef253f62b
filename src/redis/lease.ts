/**
 * The lease on a login in Redis: taken with SET NX PX under a random token, renewed while
 * its holder works, given back only by its holder. Durations on the server are Redis' own
 * (PX); waits and renewals here run on the monotonic clock, with clamped, unref'd timers.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { clampDelay } from "../clock.js";
import { TokenStoreError } from "../errors.js";
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
  /** The lease was taken again after it ran out (see LOAD): renew it again. */
  retaken(): void;
  /** Stop renewing and give the lease back (never throws: an unreleased lease expires by itself). */
  release(): Promise<void>;
}

/** Waits for the lease: TokenStoreError "lock-timeout" after `lockTimeoutMs`, "unavailable" if Redis fails. */
export async function acquireLease(commands: Commands, settings: LeaseSettings, signal?: AbortSignal): Promise<Lease> {
  const token = crypto.randomUUID(); // the global WebCrypto: importing the entry loads no node:crypto
  const started = performance.now();
  for (;;) {
    signal?.throwIfAborted();
    if ((await commands.run("taking the lease", ACQUIRE, [token, settings.leaseMs])) === 1) {
      return holdLease(commands, settings, token);
    }
    const waited = performance.now() - started;
    if (waited >= settings.lockTimeoutMs) {
      throw new TokenStoreError(
        "lock-timeout",
        `Waited ${Math.round(waited)} ms for the lease on Redis key "${settings.key}": another process holds it ` +
          `(a refresh that takes long, or a lease left by a process that died: it expires after leaseMs). Raise ` +
          `lockTimeoutMs, or check the processes sharing this key.`,
      );
    }
    // Jittered so that waiting processes do not ask in lockstep.
    const pause = Math.min(settings.retryMs * (0.5 + Math.random()), settings.lockTimeoutMs - waited);
    await sleep(clampDelay(pause), undefined, { ref: false, ...(signal ? { signal } : {}) });
  }
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

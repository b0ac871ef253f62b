/**
 * The line that callers of one process wait in for a lock (memoryStore, redisStore), first
 * come first served, bounded like the file lock's (src/node/lock.ts): a caller whose signal
 * aborts leaves at once with the signal's reason, one whose deadline passes leaves with the
 * store's "lock-timeout" error, and either passes its turn straight on. Deadlines are on the
 * monotonic clock; nothing is kept for a caller once it has left.
 */
import { clampDelay } from "./clock.js";

export interface LockQueue {
  /**
   * Waits for the callers before this one. Resolves to "leave the line" (call it when done
   * with the lock, whatever the outcome); rejects with `signal.reason`, or `timedOut()` when
   * `deadline` (a `performance.now()` value) passes first.
   */
  enter(signal: AbortSignal | undefined, deadline: number, timedOut: () => Error): Promise<() => void>;
}

export function createLockQueue(): LockQueue {
  let tail: Promise<void> = Promise.resolve();
  return {
    async enter(signal, deadline, timedOut) {
      signal?.throwIfAborted();
      const previous = tail;
      let leave!: () => void;
      const done = new Promise<void>((resolve) => (leave = resolve));
      // The next caller waits for the one before this and for this one's leave(): a caller that
      // gives up calls leave() at once, so nobody waits on it.
      tail = previous.then(() => done);
      try {
        await bounded(previous, signal, deadline, timedOut);
      } catch (error) {
        leave();
        throw error;
      }
      return leave;
    },
  };
}

/**
 * `work`'s outcome, unless the signal aborts first (rejects with its reason) or `deadline`
 * (a `performance.now()` value) passes first (rejects with `timedOut()`). Leaves no
 * listener or timer behind; `work` itself goes on.
 */
export function bounded<T>(work: Promise<T>, signal: AbortSignal | undefined, deadline: number, timedOut: () => Error): Promise<T> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    let settled = false;
    const finish = (settle: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      settle();
    };
    const onAbort = () => finish(() => reject(signal?.reason));
    const timer = setTimeout(() => finish(() => reject(timedOut())), clampDelay(deadline - performance.now()));
    signal?.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => finish(() => resolve(value)),
      (error: unknown) => finish(() => reject(error)),
    );
  });
}

import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import lockfile from "proper-lockfile";
import { TokenStoreError } from "../errors.js";

export interface FileLockOptions {
  /**
   * A lock whose heartbeat stopped this long ago belongs to a crashed process and is
   * taken over. Default 10 s; proper-lockfile's floor is 2 s.
   */
  readonly staleMs?: number;
  /** Give up waiting after this long with TokenStoreError "lock-timeout". Default 30 s. */
  readonly timeoutMs?: number;
  /** Pause between attempts while another process holds the lock. Default 100 ms. */
  readonly retryMs?: number;
}

export interface FileLock {
  /**
   * Runs `fn` while holding the lock, against other processes and other callers in
   * this process alike. Not re-entrant: calling it again from inside `fn` waits for
   * itself until the timeout.
   */
  lock<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

/**
 * A cross-process lock: the directory `lockPath`, created atomically by proper-lockfile
 * and kept fresh by its heartbeat while held.
 */
export function createFileLock(lockPath: string, options: FileLockOptions = {}): FileLock {
  const path = resolve(lockPath);
  const staleMs = Math.max(options.staleMs ?? 10_000, 2_000);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const retryMs = Math.max(options.retryMs ?? 100, 1);
  const lockOptions = {
    lockfilePath: path,
    realpath: false, // the lock guards a store that may not exist yet
    stale: staleMs,
    // Several heartbeats per lease, so one late beat (busy event loop) is not a takeover.
    update: Math.max(staleMs / 4, 1_000),
    retries: 0, // we wait ourselves: proper-lockfile's retries cannot be aborted
  };

  function timeout(): TokenStoreError {
    return new TokenStoreError(
      "lock-timeout",
      `Gave up after ${timeoutMs} ms waiting for the lock ${path}: another process (or caller) ` +
        `holds it. Retry later; a lock left by a crashed process is taken over by itself ` +
        `${staleMs} ms after its heartbeat stopped.`,
    );
  }

  return {
    async lock<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      signal?.throwIfAborted();
      const deadline = Date.now() + timeoutMs;
      // proper-lockfile does not queue callers of one process; this line does, so they
      // wait for each other's release instead of polling the file system.
      const leaveQueue = await enterQueue(path, signal, deadline).catch((error: unknown) => {
        throw error === timedOut ? timeout() : error;
      });
      try {
        await mkdir(dirname(path), { recursive: true, mode: 0o700 }).catch((error: unknown) => {
          throw ioError(path, error);
        });
        let compromised: Error | undefined;
        const release = await acquire(
          path,
          { ...lockOptions, onCompromised: (e) => (compromised = e) },
          {
            deadline,
            retryMs,
            signal,
            timeout,
          },
        );
        let result: T;
        try {
          result = await fn();
        } finally {
          // Fails when the lock was compromised meanwhile; that is reported below.
          await release().catch(() => {});
        }
        if (compromised !== undefined) {
          // Someone else may have run concurrently with `fn` (we looked stale to them, or
          // the lock was deleted): its result cannot be trusted to have been exclusive.
          throw new TokenStoreError(
            "lock-compromised",
            `Lost the lock ${path} while holding it (${codeOf(compromised) ?? "unknown cause"}): ` +
              `its heartbeat stalled for over ${staleMs} ms or the lock was removed. Retry; if ` +
              `this repeats, keep the event loop from blocking that long.`,
            { cause: compromised },
          );
        }
        return result;
      } finally {
        leaveQueue();
      }
    },
  };
}

type LockOptions = NonNullable<Parameters<typeof lockfile.lock>[1]>;

async function acquire(
  path: string,
  options: LockOptions,
  wait: {
    deadline: number;
    retryMs: number;
    signal: AbortSignal | undefined;
    timeout: () => TokenStoreError;
  },
): Promise<() => Promise<void>> {
  for (;;) {
    let release: (() => Promise<void>) | undefined;
    try {
      release = await lockfile.lock(path, options);
    } catch (error) {
      if (codeOf(error) !== "ELOCKED") throw ioError(path, error);
    }
    if (release !== undefined) {
      if (wait.signal?.aborted) {
        await release().catch(() => {});
        throw wait.signal.reason;
      }
      return release;
    }
    const left = wait.deadline - Date.now();
    if (left <= 0) throw wait.timeout();
    await settledWithin(never, Math.min(wait.retryMs, left), wait.signal);
  }
}

const queues = new Map<string, Promise<void>>();
const timedOut = Symbol("timed out");
const never = new Promise<void>(() => {});

/** Waits for the earlier callers in this process; resolves to "leave the queue". */
async function enterQueue(path: string, signal: AbortSignal | undefined, deadline: number): Promise<() => void> {
  const previous = queues.get(path) ?? Promise.resolve();
  let leave!: () => void;
  const done = new Promise<void>((resolve) => (leave = resolve));
  const tail = previous.then(() => done);
  queues.set(path, tail);
  void tail.then(() => {
    if (queues.get(path) === tail) queues.delete(path);
  });
  try {
    if (!(await settledWithin(previous, deadline - Date.now(), signal))) throw timedOut;
  } catch (error) {
    leave(); // a caller that gives up passes its turn straight on
    throw error;
  }
  return leave;
}

/** true when `promise` settles within `ms`, false after `ms`; rejects with the signal's reason. */
function settledWithin(promise: Promise<unknown>, ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      settle();
    };
    const onAbort = () => finish(() => reject(signal?.reason));
    const timer = setTimeout(() => finish(() => resolve(false)), Math.max(ms, 0));
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(
      () => finish(() => resolve(true)),
      () => finish(() => resolve(true)),
    );
  });
}

function ioError(path: string, error: unknown): TokenStoreError {
  return new TokenStoreError(
    "io",
    `Cannot create the lock ${path} (${codeOf(error) ?? String(error)}). Check that its folder is writable by this user.`,
    { cause: error },
  );
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * The cross-process lock of the file and keyring stores: a lock folder (proper-lockfile) with
 * a heartbeat and an owner record, so a lock left by a crashed process is taken over and a
 * live holder's never is; callers of one process wait in line first (docs/LOCKING.md).
 */
import * as fs from "node:fs";
import { lstat, readFile, rename, rm, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import type lockfile from "proper-lockfile";
import { clampDelay } from "../clock.js";
import { TokenStoreError } from "../errors.js";
import { makeFolders } from "./make-folders.js";
import { nodeCrypto } from "./node-crypto.js";
import { notOursBecause, octal, openToOthersBecause } from "./ownership.js";

/**
 * Options of {@link createFileLock}: the lease, how long to wait, and what to do when a
 * lock is lost while held.
 *
 * @example
 * ```ts
 * import { createFileLock, type FileLockOptions } from "connect-oidc/node";
 *
 * const options: FileLockOptions = {
 *   timeoutMs: 5_000, // give up sooner than the default 30 s
 *   onCompromised: (error) => console.error(error.message), // another process took it over
 * };
 * const lock = createFileLock("/var/lib/my-agent/state.lock", options);
 * ```
 */
export interface FileLockOptions {
  /**
   * A lock whose heartbeat stopped this long ago is taken over, unless its owner is a
   * process on this host that is still running (see docs/LOCKING.md). Default 10 s;
   * at least 2 s.
   */
  readonly staleMs?: number;
  /** Give up waiting after this long with TokenStoreError "lock-timeout". Default 30 s. */
  readonly timeoutMs?: number;
  /** Pause between attempts while another process holds the lock. Default 100 ms. */
  readonly retryMs?: number;
  /**
   * Told when the lock was lost while `fn` ran (another process took it over, or it was
   * removed), with a TokenStoreError "lock-compromised", before `lock()` settles. `lock()`
   * still returns what `fn` returned (or throws what `fn` threw): the work is done, but it
   * may have overlapped with another process's. An exception thrown here is ignored.
   */
  readonly onCompromised?: (error: TokenStoreError) => void;
}

/**
 * A cross-process lock made by {@link createFileLock}.
 *
 * @example
 * ```ts
 * import { createFileLock, type FileLock } from "connect-oidc/node";
 *
 * const lock: FileLock = createFileLock("/tmp/my-cli/refresh.lock");
 * const result = await lock.lock(async () => "done under the lock", AbortSignal.timeout(10_000));
 * ```
 */
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
 * and kept fresh by its heartbeat while held, holding a record of its owner process.
 * What it guarantees and what it does not: docs/LOCKING.md.
 *
 * @example
 * ```ts
 * import { createFileLock } from "connect-oidc/node";
 *
 * // A custom store's lock: one process at a time around its read-refresh-save.
 * const lock = createFileLock("/home/me/.cache/my-cli/login.lock");
 * await lock.lock(async () => {
 *   // read, refresh, write: no other process that uses this lock runs this meanwhile
 * });
 * ```
 */
export function createFileLock(lockPath: string, options: FileLockOptions = {}): FileLock {
  const path = resolve(lockPath);
  const staleMs = Math.max(options.staleMs ?? 10_000, 2_000);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const retryMs = Math.max(options.retryMs ?? 100, 1);
  const lockOptions = {
    lockfilePath: path,
    realpath: false, // the lock guards a store that may not exist yet
    // Staleness is judged here (isAbandoned), not by proper-lockfile: its test (mtime
    // older than `stale` by the wall clock) hands a live holder's lock to another process
    // after a forward clock step. It also bounds how long a holder retries a failing
    // heartbeat before calling the lock lost; a lost lock shows up as a changed mtime anyway.
    stale: Number.MAX_SAFE_INTEGER,
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

  function report(lost: Error): void {
    const error = new TokenStoreError(
      "lock-compromised",
      `Lost the lock ${path} while holding it (${codeOf(lost) ?? "unknown cause"}): it was removed, ` +
        `or another process took it over, so the work done under it may have overlapped with ` +
        `that process's. Holders on this host keep their lock while they run; this happens when ` +
        `the lock was deleted, or taken by a process on another host after this one's heartbeat ` +
        `stalled for over ${staleMs} ms (see docs/LOCKING.md).`,
      { cause: lost },
    );
    try {
      options.onCompromised?.(error);
    } catch {
      // The caller's callback failing must not turn fn's outcome into another one.
    }
  }

  return {
    async lock<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      signal?.throwIfAborted();
      // Monotonic: a wall-clock step must not end (or stretch) the wait.
      const deadline = performance.now() + timeoutMs;
      // proper-lockfile does not queue callers of one process; this line does, so they
      // wait for each other's release instead of polling the file system.
      const leaveQueue = await enterQueue(path, signal, deadline).catch((error: unknown) => {
        throw error === timedOut ? timeout() : error;
      });
      try {
        await prepareFolder(path);
        const owner = await newOwner();
        let lost: Error | undefined;
        const release = await acquire(
          path,
          { ...lockOptions, fs: ownerFs(owner), onCompromised: (e) => (lost ??= e) },
          { deadline, retryMs, signal, timeout, staleMs, ownerId: owner.id },
        );
        held.add(owner.id);
        try {
          return await fn();
        } finally {
          held.delete(owner.id);
          // Refused when the lock is no longer ours (it is left to whoever has it now), or
          // when it was already found lost (ERELEASED). Another failure leaves it behind.
          await release().catch((error: unknown) => {
            if (codeOf(error) === "ECOMPROMISED") lost ??= error as Error;
          });
          if (lost !== undefined) report(lost);
        }
      } finally {
        leaveQueue();
      }
    },
  };
}

/**
 * Creates the lock's folder (and any missing above it) 0700. An existing folder is the
 * user's choice (fileStore keeps the lock beside the token file) and is used unless every
 * user may write it without the sticky bit: there anyone can remove or replace the lock.
 * Group-writable folders are accepted: with per-user groups (umask 002) they are common
 * and private.
 */
async function prepareFolder(path: string): Promise<void> {
  const folder = dirname(path);
  let mode: number;
  try {
    await makeFolders(folder, 0o700);
    mode = (await stat(folder)).mode;
  } catch (error) {
    throw ioError(path, error);
  }
  if (process.platform !== "win32" && (mode & 0o002) !== 0 && (mode & 0o1000) === 0) {
    throw new TokenStoreError(
      "unsafe-folder",
      `The folder ${folder} of the lock ${path} can be written by every user (mode ${octal(mode)}, ` +
        `no sticky bit), so anyone could remove or replace the lock. Take away their write ` +
        `permission (chmod o-w ${folder}), or keep the lock (and the token file) in a folder of ` +
        `your own.`,
    );
  }
}

type LockOptions = NonNullable<Parameters<typeof lockfile.lock>[1]>;

type LockLibrary = typeof lockfile;
let lockLibrary: Promise<LockLibrary> | undefined;

/** proper-lockfile, loaded on the first lock: a process that never refreshes never takes one. */
function loadLockLibrary(): Promise<LockLibrary> {
  lockLibrary ??= import("proper-lockfile").then(
    (loaded) => loaded.default,
    (error: unknown) => {
      lockLibrary = undefined;
      throw error;
    },
  );
  return lockLibrary;
}

async function acquire(
  path: string,
  options: LockOptions,
  wait: {
    deadline: number;
    retryMs: number;
    signal: AbortSignal | undefined;
    timeout: () => TokenStoreError;
    staleMs: number;
    /** This lock() call's owner id: a lock folder carrying it is one of its own failed attempts. */
    ownerId: string;
  },
): Promise<() => Promise<void>> {
  const library = await loadLockLibrary();
  let movedAside = false; // one of this call's attempts was moved aside by a contender
  for (;;) {
    let release: (() => Promise<void>) | undefined;
    try {
      release = await library.lock(path, options);
    } catch (error) {
      // ENOENT: a contender moved the folder just made aside (removeIfAbandoned, judging an
      // older lock) before proper-lockfile's first look at it. Contention, not a failure.
      const code = codeOf(error);
      if (code === "ENOENT" && (await lockInfo(dirname(path))) !== undefined) movedAside = true;
      else if (code !== "ELOCKED") throw ioError(path, error);
    }
    if (release !== undefined) {
      if (wait.signal?.aborted) {
        await release().catch(() => {});
        throw wait.signal.reason;
      }
      return release;
    }
    if (await removeIfAbandoned(path, wait.staleMs, movedAside ? wait.ownerId : undefined)) continue;
    const left = wait.deadline - performance.now();
    if (left <= 0) throw wait.timeout();
    await settledWithin(undefined, Math.min(wait.retryMs, left), wait.signal);
  }
}

// ---------------------------------------------------------------------------------------
// The owner record: who holds a lock, so that a contender on the same host can tell a
// live holder from a dead one without trusting the wall clock.

/** The file inside the lock directory naming its holder. */
const ownerFile = "owner";

interface Owner {
  readonly pid: number;
  readonly host: string;
  /** Random, per lock(): tells this hold apart from an earlier one of the same process. */
  readonly id: string;
  /** Linux: the kernel's boot id, so a lock from before a reboot is known dead. */
  readonly boot?: string;
  /** Linux: the process's start time (clock ticks since boot), so a reused pid is known. */
  readonly start?: string;
}

/** Ids of the locks this process holds, shared by every copy of this module (ESM and CJS). */
const shared = globalThis as Record<symbol, Set<string> | undefined>;
const heldKey = Symbol.for("connect-oidc.lock.held");
const held: Set<string> = shared[heldKey] ?? new Set();
shared[heldKey] = held;

async function newOwner(): Promise<Owner> {
  const { randomBytes } = await nodeCrypto();
  return { pid: process.pid, host: hostname(), id: randomBytes(12).toString("hex"), ...linuxIdentity() };
}

let ownIdentity: { boot?: string; start?: string } | undefined;

function linuxIdentity(): { boot?: string; start?: string } {
  if (ownIdentity !== undefined) return ownIdentity;
  const identity: { boot?: string; start?: string } = {};
  if (process.platform === "linux") {
    const boot = bootId();
    const start = startTimeOf("self");
    if (boot !== undefined) identity.boot = boot;
    if (start !== undefined) identity.start = start;
  }
  ownIdentity = identity;
  return identity;
}

function bootId(): string | undefined {
  try {
    return fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat; the process name before it may hold spaces and parentheses. */
function startTimeOf(pid: number | "self"): string | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function parseOwner(text: string): Owner | undefined {
  try {
    const value = JSON.parse(text) as Partial<Owner> | null;
    const { pid, host, id, boot, start } = value ?? {};
    if (!Number.isSafeInteger(pid) || (pid as number) <= 0 || typeof host !== "string" || typeof id !== "string") return undefined;
    return {
      pid: pid as number,
      host,
      id,
      ...(typeof boot === "string" ? { boot } : {}),
      ...(typeof start === "string" ? { start } : {}),
    };
  } catch {
    return undefined;
  }
}

async function readOwner(lockDir: string): Promise<Owner | undefined> {
  return readFile(join(lockDir, ownerFile), "utf8").then(parseOwner, () => undefined);
}

/** Whether the process that made `owner` is still running (asked only for this host). */
function isRunning(owner: Owner): boolean {
  // Our pid: held by this process, or else left by an earlier process that had this pid (a
  // restarted container is pid 1 again, on the same host name and volume) or by a release
  // of ours that failed. Only the random per-hold id tells them apart; never "alive" by pid.
  if (owner.pid === process.pid) return held.has(owner.id);
  const ours = linuxIdentity();
  if (owner.boot !== undefined && ours.boot !== undefined && owner.boot !== ours.boot) return false;
  try {
    process.kill(owner.pid, 0); // signal 0: only asks whether the process exists
  } catch (error) {
    if (codeOf(error) === "ESRCH") return false; // EPERM: it exists, as another user
  }
  if (owner.start !== undefined && process.platform === "linux") {
    const start = startTimeOf(owner.pid);
    if (start !== undefined && start !== owner.start) return false; // the pid was reused
  }
  return true;
}

/**
 * Whether a held lock is abandoned. A heartbeat within the lease (by the wall clock, in
 * either direction) means held. Otherwise the owner record decides when it names a process
 * on this host: a forward clock step, a stopped or busy holder do not lose the lock, and a
 * dead holder's lock is taken over even if a backward step put its mtime in the future.
 * Without a record, or for another host, only an mtime older than the lease means abandoned.
 */
function isAbandoned(owner: Owner | undefined, age: number, staleMs: number): boolean {
  if (Math.abs(age) <= staleMs) return false;
  if (owner === undefined || owner.host !== hostname()) return age > staleMs;
  return !isRunning(owner);
}

/**
 * Removes the lock at `path` if it is abandoned; true when the caller should try again at
 * once. Contenders judge the same lock at the same moments, so the judgement is of one
 * folder: its age and owner record are read between two looks that must see the same folder
 * (inode and mtime), else it changed meanwhile and is looked at again. The folder is moved
 * aside first (atomic) and removed only if it is the one judged; a newer one is put back.
 * `ownId` (after one of this lock() call's attempts was moved aside): its owner id. A folder
 * carrying it is that attempt, put back by the contender: nobody holds it, whatever its age.
 */
async function removeIfAbandoned(path: string, staleMs: number, ownId?: string): Promise<boolean> {
  const info = await lockInfo(path);
  if (info === undefined) return true; // released meanwhile
  refuseUnlessOwnLock(path, info);
  const age = Date.now() - info.mtimeMs;
  // The common case: held, no need to read more.
  if (Math.abs(age) <= staleMs && (ownId === undefined || (await readOwner(path))?.id !== ownId)) return false;
  const owner = await readOwner(path);
  const again = await lockInfo(path);
  if (again === undefined || again.ino !== info.ino || again.mtimeMs !== info.mtimeMs) return true; // changed: look again
  if (owner?.id !== ownId && !isAbandoned(owner, age, staleMs)) return false;
  const aside = `${path}.abandoned-${(await nodeCrypto()).randomBytes(6).toString("hex")}`;
  try {
    await rename(path, aside);
  } catch (error) {
    if (codeOf(error) === "ENOENT") return true; // another contender moved it first
    throw ioError(path, error);
  }
  const moved = await lockInfo(aside);
  if (moved?.ino === info.ino) {
    await rm(aside, { recursive: true, force: true }).catch(() => {});
    return true;
  }
  // A newer lock replaced the judged one between the last look and the move: put it back.
  // If its place is taken meanwhile, its holder learns at its next heartbeat that it lost it.
  await rename(aside, path).catch(() => rm(aside, { recursive: true, force: true }).catch(() => {}));
  return false;
}

/** lstat of a lock folder; undefined when there is none. */
async function lockInfo(path: string): Promise<fs.Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if (codeOf(error) === "ENOENT") return undefined;
    throw ioError(path, error);
  }
}

/**
 * A lock this user did not make is not waited for, taken over or trusted: in a folder
 * others can write (sticky, like /tmp) another user can create it first, to block this
 * user's refreshes or to plant an owner record. Every lock made here is a 0700 folder.
 */
function refuseUnlessOwnLock(path: string, info: fs.Stats): void {
  const why =
    notOursBecause(info) ??
    (info.isDirectory() ? openToOthersBecause(info, 0o022) : "is not a folder (a lock is a folder connect-oidc makes)");
  if (why === undefined) return;
  throw new TokenStoreError(
    "unsafe-file",
    `The lock ${path} ${why}, so it is not used: in a folder others can write, such as /tmp, ` +
      `another user can make the lock first. Keep the token file (and so its lock) in a folder ` +
      `only this user can write, or remove the lock (rm -r ${path}).`,
  );
}

type Callback = (error: NodeJS.ErrnoException | null) => void;

/**
 * The file system proper-lockfile works through, for one hold: the lock directory is
 * created 0700 with the owner record inside (before proper-lockfile notes its mtime), and
 * removed only while that record is still ours, so a late release cannot delete the lock
 * of a process that took it over.
 */
function ownerFs(owner: Owner) {
  const text = JSON.stringify(owner);
  const notOurs = () => Object.assign(new Error("The lock is no longer held by this process"), { code: "ECOMPROMISED" });
  return {
    stat: fs.stat,
    utimes: fs.utimes,
    realpath: fs.realpath,
    mkdir(dir: string, callback: Callback): void {
      fs.mkdir(dir, { mode: 0o700 }, (error) => {
        if (error) return callback(error);
        fs.writeFile(join(dir, ownerFile), text, { flag: "wx", mode: 0o600 }, (writeError) => {
          if (!writeError) return callback(null);
          // Moved aside or replaced between the two steps: that directory is not ours to
          // remove; report it as taken so proper-lockfile looks again.
          if (writeError.code === "EEXIST" || writeError.code === "ENOENT") {
            return callback(Object.assign(new Error("The lock was taken meanwhile"), { code: "EEXIST" }));
          }
          fs.rmdir(dir, () => callback(writeError));
        });
      });
    },
    rmdir(dir: string, callback: Callback): void {
      fs.readFile(join(dir, ownerFile), "utf8", (error, found) => {
        if (error || parseOwner(found)?.id !== owner.id) return callback(notOurs());
        fs.unlink(join(dir, ownerFile), () => fs.rmdir(dir, callback));
      });
    },
    /** On process exit (proper-lockfile's exit handler). */
    rmdirSync(dir: string): void {
      if (parseOwner(fs.readFileSync(join(dir, ownerFile), "utf8"))?.id !== owner.id) throw notOurs();
      fs.unlinkSync(join(dir, ownerFile));
      fs.rmdirSync(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------
// Callers of one process wait in line.

const queues = new Map<string, Promise<void>>();
const timedOut = Symbol("timed out");

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
    if (!(await settledWithin(previous, deadline - performance.now(), signal))) throw timedOut;
  } catch (error) {
    leave(); // a caller that gives up passes its turn straight on
    throw error;
  }
  return leave;
}

/**
 * true when `promise` settles within `ms`, false after `ms` (clamped to setTimeout's range;
 * no promise: just the pause); rejects with the signal's reason.
 */
function settledWithin(promise: Promise<unknown> | undefined, ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      settle();
    };
    const onAbort = () => finish(() => reject(signal?.reason));
    const timer = setTimeout(() => finish(() => resolve(false)), clampDelay(ms));
    signal?.addEventListener("abort", onAbort, { once: true });
    promise?.then(
      () => finish(() => resolve(true)),
      () => finish(() => resolve(true)),
    );
  });
}

function ioError(path: string, error: unknown): TokenStoreError {
  return new TokenStoreError(
    "io",
    `Cannot create the lock ${path} (${codeOf(error) ?? String(error)}). Check that its folder is a folder this user ` +
      `can write (not in /proc, not under a file), or give the store another path.`,
    { cause: error },
  );
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

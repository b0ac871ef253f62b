/**
 * What the cross-process lock guarantees when clocks step and holders stall, and which
 * folders it refuses. docs/LOCKING.md states these guarantees; each has a test here.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readFile, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { TokenStoreError } from "../../src/errors.js";
import { keyringStore } from "../../src/node/keyring-store.js";
import { createFileLock } from "../../src/node/lock.js";
import { bundledWorker } from "../support/worker-bundle.js";

const worker = fileURLToPath(new URL("../support/lock-worker.ts", import.meta.url));
const hour = 3_600_000;
const staleMs = 2_000; // the worker's lease: a heartbeat every second
let folder: string;
const children = new Set<ChildProcess>();

before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-lock-safety-"));
});
after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await rm(folder, { recursive: true, force: true });
});

/** A lock-worker child and the lines it prints; `inside`: a command the worker runs under (e.g. unshare). */
function startWorker(...args: string[]): { child: ChildProcess; line: () => Promise<string> } {
  return startWorkerUnder([], ...args);
}

function startWorkerUnder(inside: string[], ...args: string[]): { child: ChildProcess; line: () => Promise<string> } {
  const [command, ...rest] = [...inside, process.execPath, bundledWorker(worker), ...args];
  const child: ChildProcess = spawn(command!, rest, { stdio: ["pipe", "pipe", "inherit"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    child,
    line: async () => {
      const next = await lines.next();
      if (next.done) throw new Error(`worker exited (${child.exitCode ?? child.signalCode})`);
      return next.value;
    },
  };
}

async function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await done;
}

/** Resolves with the lock's new mtime once its holder's heartbeat has renewed it. */
async function nextHeartbeat(lockPath: string): Promise<Date> {
  const before = (await stat(lockPath)).mtimeMs;
  for (const started = Date.now(); Date.now() - started < 3_000; await sleep(5)) {
    const now = await stat(lockPath);
    if (now.mtimeMs !== before) return now.mtime;
  }
  throw new Error("no heartbeat within 3 s");
}

describe("clock steps", () => {
  test("a forward clock step does not hand a live holder's lock to another process; the holder's lock() returns its result", async () => {
    const lockPath = join(folder, "forward-step.lock");
    const holder = startWorker("work", lockPath);
    assert.equal(await holder.line(), "held");
    let entered = false;
    const contender = createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 60_000 }).lock(async () => {
      entered = true;
    });
    // After the wall clock steps an hour forward, a contender finds the last heartbeat an
    // hour old until the holder's next one. Show it that, just after a heartbeat, and put
    // the mtime back before the next (the holder checks that its mtime is still its own).
    for (let round = 0; round < 3; round++) {
      const beat = await nextHeartbeat(lockPath);
      const hourAgo = new Date(Date.now() - hour);
      await utimes(lockPath, hourAgo, hourAgo);
      await sleep(400); // 20 attempts by the contender
      assert.equal(entered, false, "the contender entered while the holder was alive and working");
      await utimes(lockPath, beat, beat);
    }
    holder.child.stdin!.write("done\n");
    assert.deepEqual(JSON.parse(await holder.line()), { result: "refreshed and saved", compromised: null });
    await contender;
    assert.equal(entered, true, "the contender gets the lock once it is released");
  });

  test("a waiter whose own clock steps an hour forward neither takes a live holder's lock nor gives up early", async () => {
    const lockPath = join(folder, "waiter-step.lock");
    const holder = startWorker("work", lockPath);
    assert.equal(await holder.line(), "held");
    const realNow = Date.now;
    let entered = false;
    let settled = false;
    const waiting = createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 2_000 })
      .lock(async () => {
        entered = true;
      })
      .finally(() => (settled = true));
    try {
      await sleep(100);
      Date.now = () => realNow() + hour;
      await sleep(500);
      assert.equal(entered, false, "took a live holder's lock");
      assert.equal(settled, false, "gave up at once: the timeout followed the wall clock");
    } finally {
      Date.now = realNow;
    }
    holder.child.stdin!.write("done\n");
    assert.deepEqual(JSON.parse(await holder.line()), { result: "refreshed and saved", compromised: null });
    await waiting;
    assert.equal(entered, true);
  });

  test("a dead holder's lock with an mtime an hour ahead (a backward clock step) is taken over at once", async () => {
    const lockPath = join(folder, "backward-step.lock");
    const holder = startWorker("hold", lockPath);
    assert.equal(await holder.line(), "held");
    await killed(holder.child);
    const hourAhead = new Date(Date.now() + hour);
    await utimes(lockPath, hourAhead, hourAhead);
    const started = Date.now();
    await createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 5_000 }).lock(async () => {});
    assert.ok(Date.now() - started < 1_000, `took ${Date.now() - started} ms`);
  });
});

describe("stalled holders", () => {
  test("a stopped holder on this host (SIGSTOP) keeps its lock past the lease; it finishes when continued", async () => {
    const lockPath = join(folder, "stopped.lock");
    const holder = startWorker("work", lockPath);
    assert.equal(await holder.line(), "held");
    holder.child.kill("SIGSTOP");
    try {
      await sleep(staleMs + 1_500); // its heartbeat has stopped for longer than the lease
      await assert.rejects(
        createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 300 }).lock(async () => {}),
        { reason: "lock-timeout" },
      );
    } finally {
      holder.child.kill("SIGCONT");
    }
    holder.child.stdin!.write("done\n");
    assert.deepEqual(JSON.parse(await holder.line()), { result: "refreshed and saved", compromised: null });
  });

  test("a lock without an owner record (an older version's) is taken over after the lease by its mtime", async () => {
    const lockPath = join(folder, "no-owner.lock");
    await mkdir(lockPath);
    const fileLock = createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 200 });
    await assert.rejects(
      fileLock.lock(async () => {}),
      { reason: "lock-timeout" },
      "fresh: held",
    );
    const old = new Date(Date.now() - staleMs - 1_000);
    await utimes(lockPath, old, old);
    assert.equal(await fileLock.lock(async () => "taken over"), "taken over");
  });

  test("an owner record naming another host leaves the decision to the mtime", async () => {
    const lockPath = join(folder, "other-host.lock");
    await mkdir(lockPath);
    await writeFile(join(lockPath, "owner"), JSON.stringify({ pid: process.pid, host: `not-${hostname()}`, id: "remote" }));
    const old = new Date(Date.now() - staleMs - 1_000);
    await utimes(lockPath, old, old);
    assert.equal(await createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 1_000 }).lock(async () => "taken over"), "taken over");
  });

  test("a lock left by an earlier process with this process's id (a restarted container) is taken over", async () => {
    // The earlier process had this pid and host name (and, in a container, the same boot);
    // only its random per-hold id tells it from a hold of this process.
    const record = (id: string) => JSON.stringify({ pid: process.pid, host: hostname(), id, ...ownIdentity() });
    for (const [name, mtime] of [
      ["same-pid.lock", new Date(Date.now() - staleMs - 1_000)], // its heartbeat stopped a lease ago
      ["same-pid-ahead.lock", new Date(Date.now() + hour)], // ... and a backward clock step since
    ] as const) {
      const lockPath = join(folder, name);
      await mkdir(lockPath, { mode: 0o700 });
      await writeFile(join(lockPath, "owner"), record(`earlier-${name}`));
      await utimes(lockPath, mtime, mtime);
      const outcome = await createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 1_500 })
        .lock(async () => "taken over")
        .catch((error: unknown) => (error instanceof TokenStoreError ? error.reason : String(error)));
      assert.equal(outcome, "taken over", name);
    }
  });

  test("a container restarted as pid 1 takes over the lock its killed predecessor (also pid 1) left", {
    skip: canUnsharePid() ? false : "needs unshare --pid (root, util-linux)",
  }, async () => {
    const lockPath = join(folder, "pid-one.lock");
    const container = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
    const first = startWorkerUnder(container, "hold", lockPath);
    assert.equal(await first.line(), "held");
    assert.equal(JSON.parse(await readFile(join(lockPath, "owner"), "utf8")).pid, 1, "the holder is pid 1");
    await killed(first.child); // unshare dies; --kill-child takes the holder with it
    const second = startWorkerUnder(container, "try", lockPath);
    assert.deepEqual(JSON.parse(await second.line()), { result: "taken over", pid: 1 });
  });

  test("an owner record whose process id now belongs to another process (reused) is taken over", {
    skip: process.platform !== "linux",
  }, async () => {
    const lockPath = join(folder, "reused-pid.lock");
    await mkdir(lockPath);
    // This (live) process's id, with a start time that is not this process's.
    await writeFile(join(lockPath, "owner"), JSON.stringify({ pid: process.ppid, host: hostname(), id: "gone", start: "1" }));
    const old = new Date(Date.now() - staleMs - 1_000);
    await utimes(lockPath, old, old);
    assert.equal(await createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 1_000 }).lock(async () => "taken over"), "taken over");
  });
});

describe("a lock lost while held", () => {
  test("fn's result comes back and the loss goes to onCompromised; a lock taken over by another process is left in place", async () => {
    const lockPath = join(folder, "taken.lock");
    const reports: TokenStoreError[] = [];
    const fileLock = createFileLock(lockPath, { staleMs, onCompromised: (error) => reports.push(error) });
    const result = await fileLock.lock(async () => {
      // Another process takes the lock over: it moves ours aside and makes its own.
      await rename(lockPath, `${lockPath}.aside`);
      await mkdir(lockPath);
      await writeFile(join(lockPath, "owner"), JSON.stringify({ pid: process.ppid, host: hostname(), id: "theirs" }));
      return "saved";
    });
    assert.equal(result, "saved");
    assert.equal(reports.length, 1);
    assert.ok(reports[0] instanceof TokenStoreError, String(reports[0]));
    assert.equal(reports[0].reason, "lock-compromised");
    assert.match(reports[0].message, /taken\.lock/);
    assert.ok((await stat(join(lockPath, "owner"))).isFile(), "the new holder's lock is still there");
  });

  test("when fn threw, its error comes out, not the loss", async () => {
    const lockPath = join(folder, "lost-and-failed.lock");
    const reports: TokenStoreError[] = [];
    const fileLock = createFileLock(lockPath, { staleMs, onCompromised: (error) => reports.push(error) });
    await assert.rejects(
      fileLock.lock(async () => {
        await rm(lockPath, { recursive: true });
        await sleep(1_300); // past one heartbeat (every second with a 2 s lease)
        throw new Error("refresh failed");
      }),
      /refresh failed/,
    );
    assert.deepEqual(
      reports.map((e) => e.reason),
      ["lock-compromised"],
    );
  });
});

describe("lock folders", () => {
  const mode = async (path: string) => (await stat(path)).mode & 0o7777;

  test("the lock directory and the folders made for it are 0700", async () => {
    const lockPath = join(folder, "made", "deeper", "x.lock");
    const modes = await createFileLock(lockPath).lock(async () =>
      Promise.all([mode(join(folder, "made")), mode(join(folder, "made", "deeper")), mode(lockPath)]),
    );
    assert.deepEqual(modes.map(octal), ["700", "700", "700"]);
  });

  test("createFileLock refuses a folder every user may write without the sticky bit; sticky or group-writable is fine", async () => {
    const open = join(folder, "world-writable");
    await mkdir(open);
    await chmod(open, 0o777);
    const error = await createFileLock(join(open, "x.lock"))
      .lock(async () => assert.fail("must not run"))
      .then(
        () => assert.fail("must refuse"),
        (e: unknown) => e,
      );
    assert.ok(error instanceof TokenStoreError, String(error));
    assert.equal(error.reason, "unsafe-folder");
    assert.ok(error.message.includes(open), error.message);
    assert.match(error.message, /chmod o-w/);
    for (const allowed of [0o1777, 0o775]) {
      await chmod(open, allowed);
      assert.equal(await createFileLock(join(open, "x.lock")).lock(async () => "ran"), "ran", octal(allowed));
    }
  });

  /** keyringStore's lock with this environment: its lock folder comes from XDG_RUNTIME_DIR or TMPDIR. */
  async function keyringLock(env: { XDG_RUNTIME_DIR?: string; TMPDIR?: string }): Promise<unknown> {
    const saved = { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR, TMPDIR: process.env.TMPDIR };
    try {
      for (const name of ["XDG_RUNTIME_DIR", "TMPDIR"] as const) {
        if (env[name] === undefined) delete process.env[name];
        else process.env[name] = env[name];
      }
      const store = keyringStore({ service: "connect-oidc-lock-safety", account: "folder" });
      return await store.lock!(async () => "ran").catch((e: unknown) => e);
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  }

  function assertUnsafe(outcome: unknown, folderName: string, why: RegExp): void {
    assert.ok(outcome instanceof TokenStoreError, String(outcome));
    assert.equal(outcome.reason, "unsafe-folder");
    assert.ok(outcome.message.includes(folderName), outcome.message);
    assert.match(outcome.message, why);
    assert.match(outcome.message, /XDG_RUNTIME_DIR/, "names the fix");
  }

  test("keyringStore without XDG_RUNTIME_DIR: a runtime folder in the temp dir planted by another user is refused", async () => {
    const temp = await mkdtemp(join(folder, "tmp-"));
    await chmod(temp, 0o1777);
    const planted = join(temp, `connect-oidc-${process.getuid!()}`);
    await mkdir(planted, { mode: 0o700 });
    await chown(planted, 12345, 12345);
    assertUnsafe(await keyringLock({ TMPDIR: temp }), planted, /belongs to user 12345/);
  });

  test("keyringStore refuses its runtime folder when others may write it, or when it is a link", async () => {
    const temp = await mkdtemp(join(folder, "tmp-"));
    const runtime = join(temp, `connect-oidc-${process.getuid!()}`);
    await mkdir(runtime, { mode: 0o700 });
    await chmod(runtime, 0o777);
    assertUnsafe(await keyringLock({ TMPDIR: temp }), runtime, /can be written by other users \(mode 777\)/);
    await chmod(runtime, 0o770);
    assertUnsafe(await keyringLock({ TMPDIR: temp }), runtime, /mode 770/);
    await rm(runtime, { recursive: true });
    const elsewhere = await mkdtemp(join(folder, "elsewhere-"));
    await symlink(elsewhere, runtime);
    assertUnsafe(await keyringLock({ TMPDIR: temp }), runtime, /not a folder but a link/);

    const xdg = await mkdtemp(join(folder, "xdg-"));
    await mkdir(join(xdg, "connect-oidc"), { mode: 0o700 });
    await chmod(join(xdg, "connect-oidc"), 0o707);
    assertUnsafe(await keyringLock({ XDG_RUNTIME_DIR: xdg }), join(xdg, "connect-oidc"), /mode 707/);
  });

  test("keyringStore refuses a runtime folder whose parent others may write without the sticky bit", async () => {
    const temp = await mkdtemp(join(folder, "tmp-"));
    await chmod(temp, 0o777);
    assertUnsafe(await keyringLock({ TMPDIR: temp }), join(temp, `connect-oidc-${process.getuid!()}`), /no sticky bit/);
  });

  test("keyringStore creates a missing runtime folder 0700 and locks in it", async () => {
    const temp = await mkdtemp(join(folder, "tmp-"));
    await chmod(temp, 0o1777);
    assert.equal(await keyringLock({ TMPDIR: temp }), "ran");
    assert.equal(octal(await mode(join(temp, `connect-oidc-${process.getuid!()}`))), "700");
    const xdg = await mkdtemp(join(folder, "xdg-"));
    assert.equal(await keyringLock({ XDG_RUNTIME_DIR: xdg }), "ran");
    assert.equal(octal(await mode(join(xdg, "connect-oidc"))), "700");
  });
});

/** This process's boot id and start time as the lock records them (Linux), read here the same way. */
function ownIdentity(): { boot?: string; start?: string } {
  if (process.platform !== "linux") return {};
  const stat = readFileSync("/proc/self/stat", "utf8");
  return {
    boot: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
    start: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19],
  };
}

function canUnsharePid(): boolean {
  if (process.platform !== "linux") return false;
  try {
    execFileSync("unshare", ["--pid", "--fork", "--mount-proc", "true"], { stdio: "ignore", timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

function octal(mode: number): string {
  return mode.toString(8);
}

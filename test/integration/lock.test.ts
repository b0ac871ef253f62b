import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { TokenStoreError } from "../../src/errors.js";
import { createFileLock } from "../../src/node/lock.js";
import { bundledWorker } from "../support/worker-bundle.js";

const worker = fileURLToPath(new URL("../support/lock-worker.ts", import.meta.url));
let folder: string;
const children = new Set<ChildProcess>();

before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-lock-"));
});
after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await rm(folder, { recursive: true, force: true });
});

function startWorker(...args: string[]): ChildProcess {
  const child = spawn(process.execPath, [bundledWorker(worker), ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

/** A child process holding the lock at `lockPath` until it is killed. */
async function holder(lockPath: string): Promise<ChildProcess> {
  const child = startWorker("hold", lockPath);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (text: string) => text.includes("held") && resolve());
    child.once("exit", (code) => reject(new Error(`holder exited early (${code})`)));
  });
  return child;
}

async function killed(child: ChildProcess): Promise<void> {
  const done = exited(child);
  child.kill("SIGKILL");
  await done;
}

describe("createFileLock across processes", () => {
  test("5 processes incrementing a shared counter lose no update", async () => {
    const lockPath = join(folder, "counter.lock");
    const counter = join(folder, "counter");
    await writeFile(counter, "0");
    const processes = 5;
    const times = 20;
    const workers = Array.from({ length: processes }, () => startWorker("count", lockPath, counter, String(times)));
    const codes = await Promise.all(workers.map(exited));
    assert.deepEqual(codes, Array(processes).fill(0));
    assert.equal(Number(await readFile(counter, "utf8")), processes * times);
    await assert.rejects(stat(lockPath), { code: "ENOENT" }, "the lock is gone after the last release");
  });

  test("8 processes meeting one abandoned lock at the same moment take it in turn: none fails, no update lost (5 rounds)", async () => {
    // Contenders judge the same dead holder's lock at the same moments and move it aside;
    // one of them could move another's just-made lock instead (a failed refresh, or a lock
    // nobody held blocking everyone for a lease).
    const dead = spawn(process.execPath, ["-e", "0"]);
    await exited(dead);
    const processes = 8;
    for (let round = 1; round <= 5; round += 1) {
      const lockPath = join(folder, `abandoned-${round}.lock`);
      const counter = join(folder, `abandoned-${round}`);
      await writeFile(counter, "0");
      await mkdir(lockPath, { mode: 0o700 });
      await writeFile(join(lockPath, "owner"), JSON.stringify({ pid: dead.pid, host: hostname(), id: "dead-holder" }), { mode: 0o600 });
      const hourAgo = new Date(Date.now() - 3_600_000);
      await utimes(lockPath, hourAgo, hourAgo);
      // All at one moment, once every process has started (0.2 s of CPU each, on 2 cores).
      const startAt = String(Date.now() + 1_500);
      const workers = Array.from({ length: processes }, () => startWorker("count", lockPath, counter, "1", startAt));
      const codes = await Promise.all(workers.map(exited));
      assert.deepEqual(codes, Array(processes).fill(0), `round ${round}: every process took the lock`);
      assert.equal(Number(await readFile(counter, "utf8")), processes, `round ${round}`);
    }
  });

  test("the lock of a SIGKILLed holder is taken over within the lease", async (t) => {
    const lockPath = join(folder, "killed.lock");
    const staleMs = 2_000;
    const child = await holder(lockPath);
    // Let at least one heartbeat happen, so a live holder's lock is known to stay fresh.
    await sleep(1_200);
    const waiting = createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 200 });
    await assert.rejects(
      waiting.lock(async () => {}),
      { reason: "lock-timeout" },
      "held while alive",
    );
    await killed(child);
    const killedAt = Date.now();
    const taker = createFileLock(lockPath, { staleMs, retryMs: 20, timeoutMs: 10_000 });
    const tookAfter = await taker.lock(async () => Date.now() - killedAt);
    t.diagnostic(`took over ${tookAfter} ms after the kill`);
    // The last heartbeat came at most one update interval (1 s here) before the kill, so
    // the takeover lands within the lease; the extra second covers file systems that
    // keep mtimes in whole seconds (proper-lockfile then rounds them up).
    assert.ok(tookAfter <= staleMs + 1_000, `took over after ${tookAfter} ms`);
  });

  test("waiting is bounded: lock-timeout", async () => {
    const lockPath = join(folder, "timeout.lock");
    const child = await holder(lockPath);
    try {
      const started = Date.now();
      const error = await createFileLock(lockPath, { timeoutMs: 300, retryMs: 20 })
        .lock(async () => assert.fail("must not run"))
        .then(
          () => assert.fail("must time out"),
          (e: unknown) => e,
        );
      const waited = Date.now() - started;
      assert.ok(error instanceof TokenStoreError, String(error));
      assert.equal(error.reason, "lock-timeout");
      assert.match(error.message, /timeout\.lock/);
      assert.ok(waited >= 290 && waited < 1_000, `waited ${waited} ms`);
    } finally {
      await killed(child);
    }
  });

  test("an abort signal ends the wait at once, with the signal's reason", async () => {
    const lockPath = join(folder, "abort.lock");
    const child = await holder(lockPath);
    try {
      const fileLock = createFileLock(lockPath, { timeoutMs: 10_000, retryMs: 1_000 });
      const controller = new AbortController();
      const reason = new Error("caller gave up");
      const attempt = fileLock.lock(async () => assert.fail("must not run"), controller.signal);
      await sleep(100);
      const abortedAt = Date.now();
      controller.abort(reason);
      await assert.rejects(attempt, (e) => e === reason);
      assert.ok(Date.now() - abortedAt < 100, "rejected promptly");
      // An already aborted signal does not even try.
      await assert.rejects(
        fileLock.lock(async () => {}, AbortSignal.abort(reason)),
        (e) => e === reason,
      );
    } finally {
      await killed(child);
    }
  });
});

describe("createFileLock in one process", () => {
  test("concurrent callers run one at a time, without polling", async () => {
    const lockPath = join(folder, "same-process.lock");
    // Two lock objects for one path share the exclusion as well.
    const locks = [createFileLock(lockPath), createFileLock(lockPath)];
    let inside = 0;
    let most = 0;
    const order: number[] = [];
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        locks[i % 2]!.lock(async () => {
          inside++;
          most = Math.max(most, inside);
          await sleep(1);
          order.push(i);
          inside--;
        }),
      ),
    );
    assert.equal(most, 1);
    assert.deepEqual(
      order,
      [...order].sort((a, b) => a - b),
      "first come, first served",
    );
    // With the default 100 ms retry, polling for each other would take seconds.
    assert.ok(Date.now() - started < 1_000, `took ${Date.now() - started} ms`);
  });

  test("an aborted waiter passes its turn on; fn's result and errors come through", async () => {
    const fileLock = createFileLock(join(folder, "turns.lock"));
    let release!: () => void;
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const first = fileLock.lock(() => {
      entered();
      return new Promise<string>((resolve) => (release = () => resolve("first")));
    });
    await inside;
    const controller = new AbortController();
    const second = fileLock.lock(async () => assert.fail("aborted"), controller.signal);
    const third = fileLock.lock(async () => "third");
    controller.abort(new Error("stop"));
    await assert.rejects(second, /stop/);
    release();
    assert.equal(await first, "first");
    assert.equal(await third, "third");
    await assert.rejects(
      fileLock.lock(async () => {
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.equal(await fileLock.lock(async () => "free again"), "free again");
  });

  test("a waiter in the same process times out with lock-timeout", async () => {
    const fileLock = createFileLock(join(folder, "queue-timeout.lock"), { timeoutMs: 150 });
    let release!: () => void;
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const first = fileLock.lock(() => {
      entered();
      return new Promise<void>((resolve) => (release = resolve));
    });
    await inside;
    await assert.rejects(
      fileLock.lock(async () => {}),
      { reason: "lock-timeout" },
    );
    release();
    await first;
  });

  test("creates the lock's folder", async () => {
    const lockPath = join(folder, "a", "b", "c.lock");
    assert.equal(await createFileLock(lockPath).lock(async () => (await stat(lockPath)).isDirectory()), true);
  });

  test("a lock lost while held is reported to onCompromised, not a crash; fn's result still comes back", async () => {
    const lockPath = join(folder, "compromised.lock");
    const reports: TokenStoreError[] = [];
    const fileLock = createFileLock(lockPath, { staleMs: 2_000, onCompromised: (error) => reports.push(error) });
    const result = await fileLock.lock(async () => {
      await rm(lockPath, { recursive: true }); // as if another process had taken it over
      await sleep(1_300); // past one heartbeat (every 1 s with a 2 s lease)
      return "done";
    });
    assert.equal(result, "done");
    assert.equal(reports.length, 1);
    assert.ok(reports[0] instanceof TokenStoreError, String(reports[0]));
    assert.equal(reports[0].reason, "lock-compromised");
    assert.equal(await fileLock.lock(async () => "usable again"), "usable again");
  });
});

/**
 * Locks honour their bounds (issue 16, A4): a second caller in the same process that waits
 * for a lock gives up when its signal aborts (rejecting with the signal's reason) or after
 * the store's lock timeout (TokenStoreError "lock-timeout"), while the first holder works on
 * undisturbed; callers that gave up leave nothing behind. One suite, run against memoryStore,
 * redisStore (a real redis-server) and — the reference the others match — createFileLock.
 *
 * Reproduce: node --import tsx --test test/integration/lock-bounds.test.ts
 */
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { ConfigurationError, memoryStore, type TokenStore, TokenStoreError } from "../../src/index.js";
import { createFileLock } from "../../src/node/lock.js";
import { redisStore } from "../../src/redis.js";
import { type RedisServer, redisServerMissing, startRedisServer } from "../support/redis-server.js";

const missing = redisServerMissing();
if (missing !== undefined && process.env.CI === "true") {
  test("redis-server is available in CI", () => assert.fail(missing));
}

/** What the suite needs of a lock: the TokenStore / FileLock shape. */
interface Lockable {
  lock<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

/** How long the first holder keeps the lock: seconds, against bounds of 200 ms. */
const HOLD_MS = 2_500;
/** What "within a small bound of 200 ms" allows on a loaded 2-core machine. */
const SLACK_MS = 400;

/** `lock(fn)` held by a first caller until `release()`; resolves once its fn runs. */
async function firstHolder(lock: Lockable) {
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let finishedAt = 0;
  const result = lock.lock(async () => {
    started();
    await released;
    finishedAt = performance.now();
    return "the first holder's result";
  });
  const bound = sleep(5_000).then(() => assert.fail("the first caller never got the lock"));
  await Promise.race([running, bound]);
  return { result, release, finishedAt: () => finishedAt };
}

/** How `promise` settles and when (ms after `from`). */
async function settled(promise: Promise<unknown>, from: number): Promise<{ error: unknown; ms: number; value?: unknown }> {
  try {
    const value = await promise;
    return { error: undefined, value, ms: performance.now() - from };
  } catch (error) {
    return { error, ms: performance.now() - from };
  }
}

function suite(name: string, make: (lockTimeoutMs?: number) => Lockable) {
  describe(name, () => {
    test("a second caller whose signal aborts after 200 ms gets the signal's reason at 200 ms; the first holder's work goes on", async () => {
      const lock = make();
      const first = await firstHolder(lock);
      const releaseAt = performance.now() + HOLD_MS;
      const releasing = sleep(HOLD_MS).then(first.release);
      let ran = false;
      // Timed from the signal's making: its 200 ms run from there, not from the lock() call after it.
      const signalMadeAt = performance.now();
      const signal = AbortSignal.timeout(200);
      const second = await settled(
        lock.lock(async () => {
          ran = true;
        }, signal),
        signalMadeAt,
      );
      assert.equal(second.error, signal.reason, `rejects with the signal's reason, got ${String(second.error)}`);
      assert.ok(second.ms >= 190 && second.ms < 200 + SLACK_MS, `gave up after ${Math.round(second.ms)} ms`);
      assert.equal(ran, false, "the second caller's fn never ran");
      await releasing;
      assert.equal(await first.result, "the first holder's result");
      assert.ok(first.finishedAt() >= releaseAt - 50, "the first holder kept the lock as long as it wanted");
    });

    test("a second caller gives up after the lock timeout (200 ms) with TokenStoreError 'lock-timeout'; the first holder's work goes on", async () => {
      const lock = make(200);
      const first = await firstHolder(lock);
      const releasing = sleep(HOLD_MS).then(first.release);
      let ran = false;
      const second = await settled(
        lock.lock(async () => {
          ran = true;
        }),
        performance.now(),
      );
      assert.ok(
        second.error instanceof TokenStoreError && second.error.reason === "lock-timeout",
        second.error === undefined ? `got the lock after ${Math.round(second.ms)} ms instead` : String(second.error),
      );
      assert.match(second.error.message, /(lockTimeoutMs|Retry later)/, "the message says what to do");
      assert.ok(second.ms >= 190 && second.ms < 200 + SLACK_MS, `gave up after ${Math.round(second.ms)} ms`);
      assert.equal(ran, false, "the second caller's fn never ran");
      await releasing;
      assert.equal(await first.result, "the first holder's result");
    });

    test("callers that gave up leave nothing behind: no listener on a signal, no turn the next caller waits for", async () => {
      const lock = make();
      const first = await firstHolder(lock);
      let ranAfterGivingUp = 0;
      // 40 callers whose signals abort at 100–140 ms, all while the first holds the lock.
      const givingUp = Array.from({ length: 40 }, (_, i) =>
        settled(
          lock.lock(
            async () => {
              ranAfterGivingUp += 1;
            },
            AbortSignal.timeout(100 + i),
          ),
          performance.now(),
        ),
      );
      // One more behind them, with a signal that never aborts: it gets the lock next.
      const patient = new AbortController();
      const order: string[] = [];
      const next = lock.lock(async () => {
        order.push("patient");
        return performance.now();
      }, patient.signal);
      // Released at a set time, whatever the callers above do (they must not need it).
      let releasedAt = 0;
      const releasing = sleep(1_000).then(() => {
        releasedAt = performance.now();
        first.release();
      });
      for (const outcome of await Promise.all(givingUp)) {
        assert.ok(outcome.error instanceof DOMException && outcome.error.name === "TimeoutError", String(outcome.error));
        assert.ok(outcome.ms < 140 + SLACK_MS, `gave up after ${Math.round(outcome.ms)} ms`);
      }
      await releasing;
      assert.equal(await first.result, "the first holder's result");
      const gotIt = await Promise.race([next, sleep(3_000).then(() => assert.fail("the patient caller never got the lock"))]);
      assert.ok(gotIt - releasedAt < 300, `the next caller got the lock ${Math.round(gotIt - releasedAt)} ms after the release`);
      assert.deepEqual(order, ["patient"]);
      assert.equal(ranAfterGivingUp, 0, "no caller that gave up ran its fn later");
      assert.equal(getEventListeners(patient.signal, "abort").length, 0, "no listener left on the patient caller's signal");
      // And the lock is free: a new caller with a tight bound gets it at once.
      const again = await settled(
        lock.lock(async () => "free", AbortSignal.timeout(1_000)),
        performance.now(),
      );
      assert.equal(again.value, "free", String(again.error));
      assert.ok(again.ms < 300, `took ${Math.round(again.ms)} ms`);
    });

    test("a timeout of 0 with nobody holding the lock: the lock is taken", async () => {
      const lock = make(0);
      assert.equal(await lock.lock(async () => "taken"), "taken");
    });

    test("a signal aborted before the call: rejects at once with its reason, fn never runs", async () => {
      const lock = make();
      const controller = new AbortController();
      const reason = new Error("the caller went away");
      controller.abort(reason);
      let ran = false;
      await assert.rejects(
        lock.lock(async () => {
          ran = true;
        }, controller.signal),
        (error) => error === reason,
      );
      assert.equal(ran, false);
    });
  });
}

/** A store's lock as a Lockable. */
const lockOf = (store: TokenStore): Lockable => ({ lock: (fn, signal) => store.lock!(fn, signal) });

test("memoryStore: a bad lockTimeoutMs is a ConfigurationError at once", () => {
  for (const lockTimeoutMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, "30" as unknown as number]) {
    assert.throws(() => memoryStore({ lockTimeoutMs }), ConfigurationError, String(lockTimeoutMs));
  }
});

suite("memoryStore", (lockTimeoutMs) => lockOf(memoryStore(lockTimeoutMs === undefined ? {} : { lockTimeoutMs })));

let folder: string;
let locks = 0;
before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-lock-bounds-"));
});
after(async () => {
  await rm(folder, { recursive: true, force: true });
});
suite("createFileLock (the reference)", (timeoutMs) => {
  locks += 1;
  return createFileLock(join(folder, `bounds-${locks}.lock`), timeoutMs === undefined ? {} : { timeoutMs });
});

describe("on a real redis-server", { skip: missing }, () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  let keys = 0;
  before(async () => {
    server = await startRedisServer();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await server?.close();
  });
  suite("redisStore", (lockTimeoutMs) => {
    const client = new Redis(server.url);
    client.on("error", () => {});
    clients.push(client);
    keys += 1;
    return lockOf(redisStore({ client, key: `bounds:{login-${keys}}`, ...(lockTimeoutMs === undefined ? {} : { lockTimeoutMs }) }));
  });
});

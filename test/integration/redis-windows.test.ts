/**
 * The fleet's remaining windows (issue 16, A5), on a real redis-server and a real
 * oidc-provider: a lease holder paused between its read and its request to the identity
 * provider never sends its refresh token once its lease is lost (an injected pause at
 * exactly that point); a save Redis runs late (ioredis's offline queue) cannot overwrite a
 * newer login; a lease command that went unanswered and lands late does not block others
 * for leaseMs; an older encrypted value written back is detected.
 *
 * Reproduce: node --import tsx --test test/integration/redis-windows.test.ts
 */
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { after, before, describe, test, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis, type RedisOptions } from "ioredis";
import {
  createTokenManager,
  type LockHold,
  type StoredTokens,
  type TokenEvent,
  type TokenStore,
  TokenStoreError,
} from "../../src/index.js";
import { type RedisStoreOptions, redisStore } from "../../src/redis.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { type RedisServer, redisServerMissing, startRedisServer } from "../support/redis-server.js";

const missing = redisServerMissing();
if (missing !== undefined && process.env.CI === "true") {
  test("redis-server is available in CI", () => assert.fail(missing));
}

const leaks = createLeakScanner();

/** redisStore, whose `lock` is always there. */
const locking = (options: RedisStoreOptions) => redisStore(options) as TokenStore & Required<Pick<TokenStore, "lock">>;

/** Waits until `ready()` holds, at most `ms`; fails naming `what`. */
async function until(ready: () => boolean | Promise<boolean>, what: string, ms = 5_000): Promise<void> {
  const due = performance.now() + ms;
  while (!(await ready())) {
    if (performance.now() > due) assert.fail(`waited ${ms} ms for ${what}`);
    await sleep(10);
  }
}

const login = (n: number): StoredTokens => ({
  version: 1,
  issuer: "https://login.example.com",
  clientId: "fleet",
  accessToken: `access-${n}-${"s3cr3t".repeat(6)}`,
  refreshToken: `refresh-${n}-${"s3cr3t".repeat(6)}`,
  issuedAt: 1_700_000_000_000,
  expiresAt: 1_700_000_300_000,
});
for (let n = 0; n < 10; n += 1) leaks.remember(login(n).accessToken!, login(n).refreshToken!);

/** The TokenStoreError `promise` rejects with, checked for token material. */
async function storeFailure(promise: Promise<unknown>): Promise<TokenStoreError> {
  const error = await promise.then(
    () => assert.fail("expected a TokenStoreError"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof TokenStoreError, `a TokenStoreError: ${String(error)}`);
  leaks.assertClean(error, "error");
  return error;
}

/**
 * A store whose first read under its lock, once armed, pauses after Redis answered and
 * before the manager goes on to the identity provider: the point where a holder stopped by
 * SIGSTOP, a GC pause or a VM migration sits with the refresh token in hand.
 */
function pauseAfterRead(store: TokenStore) {
  const inLock = new AsyncLocalStorage<true>();
  let armed = false;
  let reached!: () => void;
  const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
  let resume!: () => void;
  const resumed = new Promise<void>((resolve) => (resume = resolve));
  /** What each LockHold.confirm() found: "held", or the TokenStoreError reason. */
  const confirmations: string[] = [];
  const watched = (hold: LockHold | undefined): LockHold | undefined =>
    hold && {
      confirm: () =>
        hold.confirm().then(
          () => void confirmations.push("held"),
          (error: unknown) => {
            confirmations.push(error instanceof TokenStoreError ? error.reason : "failed");
            throw error;
          },
        ),
    };
  return {
    confirmations,
    store: {
      async load() {
        const stored = await store.load();
        if (armed && inLock.getStore() === true) {
          armed = false;
          reached();
          await resumed;
        }
        return stored;
      },
      save: (tokens) => store.save(tokens),
      clear: () => store.clear(),
      // The hold goes through: a wrapper that drops it turns the re-check off.
      lock: (fn, signal) => store.lock!((hold) => inLock.run(true, () => fn(watched(hold))), signal),
    } satisfies TokenStore,
    arm: () => {
      armed = true;
    },
    reached: () => Promise.race([reachedPromise, sleep(10_000).then(() => assert.fail("the paused holder never read the login"))]),
    resume: () => resume(),
  };
}

describe("the fleet's remaining windows", { skip: missing }, () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  let keys = 0;
  const connect = (options: RedisOptions = {}) => {
    const client = new Redis(server.url, options);
    client.on("error", () => {});
    clients.push(client);
    return client;
  };
  const freshKey = () => {
    keys += 1;
    return `windows:{login-${keys}}`;
  };
  let admin: Redis;

  before(async () => {
    server = await startRedisServer();
    admin = connect();
  });
  after(async () => {
    server?.resume();
    for (const c of clients) c.disconnect();
    await server?.close();
  });

  /** Drops `client`'s connection: until it reconnects (retryStrategy), its commands wait in ioredis's offline queue. */
  const cutOff = async (client: Redis) => {
    const id = (await client.client("ID")) as number;
    await admin.client("KILL", "ID", String(id));
    await until(() => client.status !== "ready", "the client to notice its connection was closed");
  };
  /** Resolves once `client` is connected again and every command it had queued has run. */
  const reconnected = async (client: Redis) => {
    await until(() => client.status === "ready", "the client to reconnect", 10_000);
    await client.ping();
  };
  /** A client that waits 2 s before it reconnects. */
  const slowToReconnect = () => connect({ retryStrategy: () => 2_000 });

  describe("a holder paused between its read and its request to the identity provider", () => {
    let idp: Idp;
    before(async () => {
      idp = await startIdp({ accessTokenTtl: 60, rotateRefreshTokens: true });
    });
    after(() => idp?.close());

    /** Two managers (two machines) on one login in `key`, A's reads pausable; tokens of both are checked for leaks. */
    const twoMachines = async (t: TestContext, key: string) => {
      const leaseMs = 500;
      const setup = createTokenManager({
        issuer: idp.issuer,
        clientId: idp.clientId,
        store: redisStore({ client: connect(), key }),
        allowInsecureRequests: true,
      });
      await setup.setTokens(await idp.login());
      setup.close();
      const eventsOfA: TokenEvent[] = [];
      const paused = pauseAfterRead(redisStore({ client: connect(), key, leaseMs }));
      const machine = (store: TokenStore, onEvent?: (e: TokenEvent) => void) =>
        createTokenManager({
          issuer: idp.issuer,
          clientId: idp.clientId,
          store,
          allowInsecureRequests: true,
          backoff: { baseMs: 100, maxMs: 200 },
          ...(onEvent ? { onEvent } : {}),
        });
      const a = machine(paused.store, (e) => eventsOfA.push(e));
      const b = machine(redisStore({ client: connect(), key, leaseMs }));
      t.after(() => {
        a.close();
        b.close();
      });
      const first = await a.getAccessToken();
      assert.equal(await b.getAccessToken(), first, "both machines start from the stored login");
      leaks.remember(first);
      idp.resetStats();
      return { a, b, paused, first, eventsOfA, leaseMs };
    };

    test("its lease lost to another machine that refreshed meanwhile: it never sends the used refresh token; the newer login stands", async (t) => {
      const key = freshKey();
      const { a, b, paused, first, eventsOfA } = await twoMachines(t, key);
      paused.arm();
      const callOfA = a.getAccessToken({ rejected: first }).then(
        (token) => ({ token }),
        (error: unknown) => ({ error }),
      );
      await paused.reached();
      // A's lease runs out, as it does when its holder is stopped (its renewals stop too).
      await admin.del(`${key}:lease`);
      const newer = await b.getAccessToken({ rejected: first });
      leaks.remember(newer);
      assert.equal(idp.stats.byGrantType.refresh_token, 1, "B refreshed");
      paused.resume();
      const outcome = await callOfA;
      assert.deepEqual(paused.confirmations, ["fenced"], "A found its lease lost right before its request");
      assert.deepEqual(outcome, { token: newer }, "A adopted the newer login B stored instead");
      assert.equal(idp.stats.invalidGrant, 0, "no refresh token was presented twice");
      assert.equal(idp.stats.byGrantType.refresh_token, 1, "A sent no refresh request");
      assert.ok(
        eventsOfA.some((e) => e.type === "adopted"),
        `A's events: ${eventsOfA.map((e) => e.type).join(", ")}`,
      );
      for (const e of eventsOfA) leaks.assertClean(e, "event");
    });

    test("its lease held by another machine inside its refresh: it does not send; the other's refresh stands", async (t) => {
      const key = freshKey();
      const { a, b, paused, first } = await twoMachines(t, key);
      paused.arm();
      const callOfA = a.getAccessToken({ rejected: first }).catch(() => undefined);
      await paused.reached();
      await admin.del(`${key}:lease`);
      idp.setTokenLatency(1_000, { phase: "before" });
      const callOfB = b.getAccessToken({ rejected: first });
      await until(() => idp.stats.tokenRequests === 1, "B's refresh request to reach the IdP");
      assert.ok((await admin.get(`${key}:lease`)) !== null, "B holds the lease");
      paused.resume();
      await callOfA;
      assert.deepEqual(paused.confirmations, ["fenced"], "A found the lease held by B right before its request");
      idp.setTokenLatency(0);
      const newer = await callOfB;
      leaks.remember(newer);
      await until(async () => (await a.getAccessToken().catch(() => undefined)) === newer, "A to adopt B's login");
      assert.equal(idp.stats.invalidGrant, 0, "no refresh token was presented twice");
      assert.equal(idp.stats.byGrantType.refresh_token, 1, "only B's refresh reached the IdP");
    });

    test("its lease ran out but nobody took it or wrote: it takes the lease again and refreshes, once", async (t) => {
      const key = freshKey();
      const { a, b, paused, first } = await twoMachines(t, key);
      paused.arm();
      const callOfA = a.getAccessToken({ rejected: first });
      await paused.reached();
      await admin.del(`${key}:lease`);
      paused.resume();
      const newer = await callOfA;
      leaks.remember(newer);
      assert.deepEqual(paused.confirmations, ["held"], "A took the lapsed lease again");
      assert.notEqual(newer, first);
      assert.equal(idp.stats.byGrantType.refresh_token, 1);
      assert.equal(await b.getAccessToken({ rejected: first }), newer, "B adopts it");
      assert.equal(idp.stats.invalidGrant, 0);
    });
  });

  test("a save that timed out waiting in ioredis's offline queue, run late, cannot overwrite the newer login stored meanwhile", async () => {
    for (const mode of ["under the lease", 'without one (fallback "local")'] as const) {
      const key = freshKey();
      const a = slowToReconnect();
      const storeA = locking({
        client: a,
        key,
        leaseMs: 300,
        timeoutMs: 200,
        ...(mode === "under the lease" ? {} : { fallback: "local" as const }),
      });
      const storeB = locking({ client: connect(), key, leaseMs: 300 });
      await storeB.save(login(1));
      if (mode === "under the lease") {
        const late = await storeA.lock(async () => {
          assert.deepEqual(await storeA.load(), login(1));
          await cutOff(a);
          return storeFailure(storeA.save(login(2)));
        });
        assert.equal(late.reason, "unavailable");
      } else {
        assert.deepEqual(await storeA.load(), login(1), "A saw version 1");
        await cutOff(a);
        // Redis unreachable: A goes on alone, its lock, read and save fall back.
        await storeA.lock(async () => {
          assert.deepEqual(await storeA.load(), login(1));
          await storeA.save(login(2));
        });
      }
      // Meanwhile B stores a newer login (once A's lease, if any, ran out).
      await storeB.lock(async () => {
        await storeB.load();
        await storeB.save(login(3));
      });
      assert.notEqual(a.status, "ready", `${mode}: B wrote before A's queued commands ran`);
      await reconnected(a);
      assert.deepEqual(await storeB.load(), login(3), `${mode}: the newer login stands`);
      assert.equal(await admin.hget(key, "version"), "2", `${mode}: A's late save was not applied`);
    }
  });

  test("a lease command that went unanswered and lands late does not block others for leaseMs", async () => {
    for (const how of ["waiting in ioredis's offline queue", "in flight to a stopped redis-server"] as const) {
      const key = freshKey();
      const a = slowToReconnect();
      const storeA = locking({ client: a, key, leaseMs: 10_000, timeoutMs: 300 });
      const storeB = locking({ client: connect(), key, leaseMs: 10_000, lockTimeoutMs: 4_000 });
      let ran = false;
      if (how === "waiting in ioredis's offline queue") await cutOff(a);
      else server.pause();
      const refused = await storeFailure(
        storeA.lock(async () => {
          ran = true;
        }),
      );
      assert.equal(refused.reason, "unavailable", how);
      assert.equal(ran, false);
      if (how === "waiting in ioredis's offline queue") await reconnected(a);
      else {
        server.resume();
        await a.ping();
      }
      const from = performance.now();
      const outcome = await storeB.lock(async () => "B holds the lease").catch((error: unknown) => error);
      const waited = performance.now() - from;
      assert.equal(outcome, "B holds the lease", `${how}: ${String(outcome)}`);
      assert.ok(waited < 1_000, `${how}: B waited ${Math.round(waited)} ms for the lease (leaseMs 10 s)`);
    }
  });

  test("an older encrypted value written back over a newer one is 'corrupt', not an older login; values of older versions still read", async () => {
    const client = connect();
    const key = freshKey();
    const encryptionKey = crypto.getRandomValues(new Uint8Array(32));
    const store = locking({ client, key, encryptionKey });
    await store.save(login(1));
    const older = await client.hgetall(key);
    await store.save(login(2));
    // Someone who can write Redis but holds no key writes the older value back.
    await client.hset(key, "value", older.value!);
    const replayed = await storeFailure(store.load());
    assert.equal(replayed.reason, "corrupt");
    assert.match(replayed.message, /an older value written back/);
    // The limit (docs/REDIS.md): written back together with its version, nothing in Redis tells it apart.
    await client.hset(key, "version", older.version!, "value", older.value!);
    assert.deepEqual(await store.load(), login(1));

    // A value of connect-oidc before this change (bound to the key only) still reads, and
    // the next save under the lock writes it bound to its version.
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const aesKey = await crypto.subtle.importKey("raw", encryptionKey, "AES-GCM", false, ["encrypt"]);
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: new TextEncoder().encode(key) },
        aesKey,
        new TextEncoder().encode(JSON.stringify(login(4))),
      ),
    );
    await client.hset(key, "version", "7", "value", `aes-gcm:${Buffer.concat([iv, sealed]).toString("base64")}`);
    await store.lock(async () => {
      assert.deepEqual(await store.load(), login(4));
      await store.save(login(5));
    });
    assert.match((await client.hget(key, "value"))!, /^aes-gcm2:/);
    assert.equal(await client.hget(key, "version"), "8");
    // Saves that read nothing first (setTokens under the lease; outside any lock) are bound too.
    await store.lock(() => store.save(login(6)));
    assert.deepEqual(await redisStore({ client: connect(), key, encryptionKey }).load(), login(6));
    await store.save(login(7));
    assert.deepEqual(await redisStore({ client: connect(), key, encryptionKey }).load(), login(7));
    assert.equal(await client.hget(key, "version"), "10");
  });
});

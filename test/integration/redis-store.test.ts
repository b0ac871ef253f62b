/**
 * redisStore against a real redis-server (started on a loopback port by these tests):
 * the stored form, the lease, fenced saves, corrupt values, encryption at rest, a Redis
 * that does not answer, option checks, and what importing the entry points loads.
 * Without redis-server the tests skip, except in CI, where they fail.
 *
 * Reproduce: node --import tsx --test test/integration/redis-store.test.ts
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Cluster, Redis } from "ioredis";
import { ConfigurationError, type StoredTokens, TokenStoreError } from "../../src/index.js";
import { generateDPoPKey, storedForm } from "../../src/dpop-key.js";
import { redisStore } from "../../src/redis.js";
import { moduleLogArgs } from "../support/cold-build.js";
import { createLeakScanner } from "../support/leaks.js";
import { type RedisServer, redisServerMissing, startRedisCluster, startRedisServer } from "../support/redis-server.js";

const missing = redisServerMissing();
if (missing !== undefined && process.env.CI === "true") {
  test("redis-server is available in CI", () => assert.fail(missing));
}

const login = (accessToken: string, refreshToken = `rt-${accessToken}`): StoredTokens => ({
  version: 1,
  issuer: "https://login.example.com",
  clientId: "fleet",
  accessToken,
  refreshToken,
  issuedAt: 1_700_000_000_000,
  expiresAt: 1_700_000_300_000,
});
const secret = (n: number) => `access-${n}-${"s3cr3t".repeat(6)}`;
const leaks = createLeakScanner();
for (let n = 0; n < 10; n += 1) leaks.remember(secret(n), `rt-${secret(n)}`);

/** The error `promise` rejects with, scanned for token material. */
async function failure(promise: Promise<unknown>): Promise<TokenStoreError> {
  const error = await promise.then(
    () => assert.fail("expected a TokenStoreError"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof TokenStoreError, `a TokenStoreError: ${String(error)}`);
  leaks.assertClean(error, "error");
  return error;
}

describe("redisStore", { skip: missing }, () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  let keys = 0;
  const connect = () => {
    const client = new Redis(server.url);
    client.on("error", () => {});
    clients.push(client);
    return client;
  };
  const freshKey = () => {
    keys += 1;
    return `test:{login-${keys}}`;
  };

  before(async () => {
    server = await startRedisServer();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await server?.close();
  });

  test("saves, loads and clears one login; the key is a hash {version, value} whose version counts every write", async () => {
    const client = connect();
    const key = freshKey();
    const store = redisStore({ client, key });
    assert.equal(await store.load(), undefined);
    await store.save(login(secret(1)));
    assert.deepEqual(await redisStore({ client: connect(), key }).load(), login(secret(1)), "another connection reads it");
    assert.equal(await client.hget(key, "version"), "1");
    await store.save({ ...login(secret(2)), id_token: "dropped" } as StoredTokens);
    assert.deepEqual(await store.load(), login(secret(2)), "only the login's own fields are kept");
    await store.clear();
    assert.equal(await store.load(), undefined);
    assert.deepEqual(await client.hgetall(key), { version: "3" }, "a cleared login keeps its version");
  });

  test("lock: one holder at a time across connections; the lease is renewed past leaseMs while fn runs, then released", async () => {
    const key = freshKey();
    const a = redisStore({ client: connect(), key, leaseMs: 300 });
    const b = redisStore({ client: connect(), key, leaseMs: 300, retryMs: 10 });
    const order: string[] = [];
    const first = a.lock!(async () => {
      order.push("a in");
      await sleep(1_000); // more than three leases: renewals keep it
      assert.ok((await connect().pttl(`${key}:lease`)) > 0, "the lease is still held");
      order.push("a out");
    });
    // b asks only once a holds the lock (a's connection may take a while to open under load).
    for (let waited = 0; !order.includes("a in"); waited += 10) {
      assert.ok(waited < 5_000, "a did not get the free lock within 5 s");
      await sleep(10);
    }
    const second = b.lock!(async () => {
      order.push("b in");
    });
    await Promise.all([first, second]);
    assert.deepEqual(order, ["a in", "a out", "b in"]);
    assert.equal(await connect().exists(`${key}:lease`), 0, "released");
  });

  test("a lease left by a dead holder is taken after it expires; a live holder's makes others give up after lockTimeoutMs", async () => {
    const key = freshKey();
    const client = connect();
    await client.set(`${key}:lease`, "a process that died", "PX", 400);
    const started = performance.now();
    await redisStore({ client, key, retryMs: 10 }).lock!(async () => {});
    const waited = performance.now() - started;
    assert.ok(waited >= 300 && waited < 2_000, `took over after ${Math.round(waited)} ms`);

    await client.set(`${key}:lease`, "a live holder", "PX", 10_000);
    const error = await failure(redisStore({ client, key, lockTimeoutMs: 200 }).lock!(async () => assert.fail("ran without the lease")));
    assert.equal(error.reason, "lock-timeout");
    assert.match(error.message, /Redis key "test:\{login-\d+\}"/);
    assert.equal(await client.get(`${key}:lease`), "a live holder", "never released by another");
  });

  test("fenced: a holder that stalls past its lease cannot overwrite the login stored meanwhile, nor read under the lost lease", async () => {
    const key = freshKey();
    const stalled = redisStore({ client: connect(), key, leaseMs: 200 });
    const other = redisStore({ client: connect(), key, leaseMs: 200, retryMs: 10 });
    await other.save(login(secret(1)));
    const error = await failure(
      stalled.lock!(async () => {
        assert.deepEqual(await stalled.load(), login(secret(1)));
        // A real stall: the event loop is blocked, no renewal runs (a GC pause, a slow disk).
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600);
        await other.lock!(async () => {
          await other.load();
          await other.save(login(secret(2)));
        });
        await stalled.save(login(secret(3)));
      }),
    );
    assert.equal(error.reason, "fenced");
    assert.match(error.message, /Redis key "test:\{login-\d+\}".*the newer login stands/);
    assert.deepEqual(await other.load(), login(secret(2)), "the newer login stands");

    const lateRead = await failure(
      stalled.lock!(async () => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600);
        await connect().set(`${key}:lease`, "the next holder", "PX", 5_000);
        return stalled.load();
      }),
    );
    assert.equal(lateRead.reason, "fenced", "no refresh under a lost lease");
    assert.equal(await connect().get(`${key}:lease`), "the next holder", "the next holder's lease is left alone");
  });

  test("a lease that ran out while nobody took it is taken again by the read; a save whose version still matches goes through", async () => {
    const key = freshKey();
    const client = connect();
    const store = redisStore({ client, key, leaseMs: 200 });
    await store.lock!(async () => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400); // the lease ran out, nobody took it
      await sleep(300); // the renewal found it gone
      assert.equal(await client.exists(`${key}:lease`), 0);
      await store.load();
      await sleep(500); // more than two leases: renewed again
      assert.ok((await client.pttl(`${key}:lease`)) > 0, "held again, and renewed");
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400); // ran out again, nobody took it
      await store.save(login(secret(4)));
    });
    assert.equal(await client.exists(`${key}:lease`), 0, "released");
    assert.deepEqual(await store.load(), login(secret(4)));
    await store.save(login(secret(5)));
    assert.deepEqual(await store.load(), login(secret(5)));
  });

  test("work that a lock's fn leaves behind runs under no lease: a read after lock() returned does not take the released lease again", async () => {
    const key = freshKey();
    const client = connect();
    const store = redisStore({ client, key, leaseMs: 5_000 });
    await store.save(login(secret(6)));
    let late: Promise<unknown> | undefined;
    await store.lock!(async () => {
      // Scheduled inside fn, run after lock() has released the lease.
      late = new Promise((resolve, reject) => setTimeout(() => store.load().then(resolve, reject), 100));
    });
    assert.deepEqual(await late, login(secret(6)));
    assert.equal(await client.exists(`${key}:lease`), 0, "nobody holds the lease: others need not wait leaseMs");
    // A lock of another store inside fn is that store's own: this store's hold still fences its save.
    const other = redisStore({ client: connect(), key: freshKey() });
    await store.lock!(async () => {
      await store.load();
      await client.hset(key, "version", 99); // a newer login stored elsewhere meanwhile
      await other.lock!(async () => {
        const error = await failure(store.save(login(secret(7))));
        assert.equal(error.reason, "fenced");
      });
    });
  });

  test("corrupt values: a TokenStoreError 'corrupt' naming the key, never the value; a save replaces them", async () => {
    const client = connect();
    const key = freshKey();
    const store = redisStore({ client, key });
    const cases: [string, () => Promise<unknown>, RegExp][] = [
      ["not JSON", () => client.hset(key, "version", "1", "value", `{"accessToken":"${secret(6)}"`), /not JSON/],
      ["wrong format version", () => client.hset(key, "value", JSON.stringify({ ...login(secret(6)), version: 9 })), /format version/],
      ["a string, not a hash", () => client.del(key).then(() => client.set(key, secret(6))), /not a hash/],
      ["encrypted, no key given", () => client.del(key).then(() => client.hset(key, "value", "aes-gcm:AAAA")), /no encryptionKey/],
    ];
    for (const [label, write, why] of cases) {
      await write();
      const error = await failure(store.load());
      assert.equal(error.reason, "corrupt", label);
      assert.match(error.message, /The Redis key "test:\{login-\d+\}" holds no usable login/, label);
      assert.match(error.message, why, label);
    }
    await client.del(key).then(() => client.set(key, "garbage"));
    await store.save(login(secret(7)));
    assert.deepEqual(await store.load(), login(secret(7)), "a save replaced the value of the wrong type");
  });

  test("encryption at rest: Redis holds AES-GCM ciphertext; another key, another Redis key or no key cannot read it", async () => {
    const client = connect();
    const key = freshKey();
    const encryptionKey = crypto.getRandomValues(new Uint8Array(32));
    const store = redisStore({ client, key, encryptionKey });
    await store.save(login(secret(8)));
    const raw = await client.hget(key, "value");
    assert.match(raw!, /^aes-gcm2:/);
    assert.ok(!raw!.includes(secret(8).slice(0, 16)) && !raw!.includes("fleet"), "nothing of the login in clear");
    assert.deepEqual(await redisStore({ client: connect(), key, encryptionKey }).load(), login(secret(8)), "same key reads it");
    const webCryptoKey = await crypto.subtle.importKey("raw", encryptionKey, "AES-GCM", false, ["encrypt", "decrypt"]);
    assert.deepEqual(await redisStore({ client, key, encryptionKey: webCryptoKey }).load(), login(secret(8)), "a CryptoKey works too");

    const otherKey = await failure(redisStore({ client, key, encryptionKey: crypto.getRandomValues(new Uint8Array(32)) }).load());
    assert.match(otherKey.message, /does not decrypt/);
    const moved = freshKey();
    await client.hset(moved, "version", "1", "value", raw!);
    assert.match((await failure(redisStore({ client, key: moved, encryptionKey }).load())).message, /does not decrypt/, "bound to its key");
    assert.match((await failure(redisStore({ client, key }).load())).message, /no encryptionKey/);
    await client.hset(key, "value", JSON.stringify(login(secret(8))));
    assert.match((await failure(store.load())).message, /not encrypted/, "a plain value is refused when a key is given");
  });

  test("a DPoP-bound login (its key as JWKs) round-trips as the helpers serialize it; encrypted, Redis holds no private key", async () => {
    const client = connect();
    const key = freshKey();
    const dpopKey = await storedForm(await generateDPoPKey("ES256", true), false);
    const bound: StoredTokens = { ...login(secret(3)), tokenType: "DPoP", dpopKey };
    await redisStore({ client, key }).save(bound);
    assert.deepEqual(await redisStore({ client, key }).load(), bound);
    const encryptionKey = crypto.getRandomValues(new Uint8Array(32));
    await redisStore({ client, key, encryptionKey }).save(bound);
    const privateD = (dpopKey as { privateJwk: JsonWebKey }).privateJwk.d!;
    assert.ok(!(await client.hget(key, "value"))!.includes(privateD), "no private key in clear");
    assert.deepEqual(await redisStore({ client, key, encryptionKey }).load(), bound);
  });

  test("Redis not answering: every call fails within timeoutMs with 'unavailable' naming Redis and the key", async () => {
    const stopped = await startRedisServer();
    const client = new Redis(stopped.url, { maxRetriesPerRequest: null });
    client.on("error", () => {});
    clients.push(client);
    const key = freshKey();
    const store = redisStore({ client, key, timeoutMs: 300 });
    await store.save(login(secret(9)));
    await stopped.close();
    for (const [label, call] of [
      ["load", () => store.load()],
      ["save", () => store.save(login(secret(9)))],
      ["clear", () => store.clear()],
      ["lock", () => store.lock!(async () => assert.fail("ran without the lease"))],
    ] as const) {
      const started = performance.now();
      const error = await failure(call());
      const took = performance.now() - started;
      assert.equal(error.reason, "unavailable", label);
      assert.match(error.message, /^Redis is unreachable or failing: .* of key "test:\{login-\d+\}": no answer within 300 ms/, label);
      assert.ok(took < 1_000, `${label} took ${Math.round(took)} ms`);
    }
  });

  test('fallback "local": without Redis the store goes on with the login it last read, a lock within the process, and says so', async () => {
    const stopped = await startRedisServer();
    const client = new Redis(stopped.url, { maxRetriesPerRequest: null });
    client.on("error", () => {});
    clients.push(client);
    const told: TokenStoreError[] = [];
    const store = redisStore({ client, key: freshKey(), timeoutMs: 200, fallback: "local", onFallback: (e) => told.push(e) });
    await store.save(login(secret(1)));
    await stopped.close();
    const order: string[] = [];
    await Promise.all([
      store.lock!(async () => {
        order.push("first in");
        assert.deepEqual(await store.load(), login(secret(1)), "the login last seen");
        await store.save(login(secret(2)));
        order.push("first out");
      }),
      store.lock!(async () => {
        order.push("second in");
        assert.deepEqual(await store.load(), login(secret(2)), "what this process saved");
      }),
    ]);
    assert.deepEqual(order, ["first in", "first out", "second in"], "callers of the process still take turns");
    assert.ok(told.length >= 4 && told.every((e) => e.reason === "unavailable"), `onFallback told ${told.length} times`);
    for (const e of told) leaks.assertClean(e, "onFallback error");
  });

  test("bad options are a ConfigurationError at once", () => {
    const client = connect();
    const cases: [string, unknown][] = [
      ["no options", undefined],
      ["no client", { key: "k" }],
      ["not a client", { client: {}, key: "k" }],
      ["no key", { client }],
      ["empty key", { client, key: "" }],
      ["leaseMs too short", { client, key: "k", leaseMs: 10 }],
      ["timeoutMs NaN", { client, key: "k", timeoutMs: Number.NaN }],
      ["unknown fallback", { client, key: "k", fallback: "memory" }],
      ["onFallback not a function", { client, key: "k", onFallback: "log" }],
      ["short encryption key", { client, key: "k", encryptionKey: new Uint8Array(8) }],
      ["HMAC key", { client, key: "k", encryptionKey: { algorithm: { name: "HMAC" }, usages: ["sign"] } }],
      ["Cluster key without a hash tag", { client: { eval: client.eval.bind(client), isCluster: true }, key: "login" }],
    ];
    for (const [label, options] of cases) {
      assert.throws(() => redisStore(options as never), ConfigurationError, label);
    }
    assert.doesNotThrow(() => redisStore({ client: { eval: client.eval.bind(client), isCluster: true }, key: "{fleet}:login" }));
  });

  test("never leaks: every error seen above is free of token material", () => {
    assert.ok(leaks.count > 0);
  });
});

describe("redisStore on Redis Cluster", { skip: missing }, () => {
  test("an ioredis Cluster with a hash-tagged key: the login and its lease share a slot; load, save, lock and fencing work", async (t) => {
    const cluster = await startRedisCluster(3);
    const client = new Cluster(cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })));
    client.on("error", () => {});
    t.after(async () => {
      client.disconnect();
      await cluster.close();
    });
    const key = "{billing}:login";
    const slotOf = (k: string) => client.cluster("KEYSLOT", k);
    assert.equal(await slotOf(`${key}:lease`), await slotOf(key));
    const store = redisStore({ client, key, leaseMs: 200 });
    const other = redisStore({ client, key, leaseMs: 200, retryMs: 10 });
    await store.save(login(secret(1)));
    assert.deepEqual(await other.load(), login(secret(1)));
    const error = await failure(
      store.lock!(async () => {
        await store.load();
        assert.ok((await client.pttl(`${key}:lease`)) > 0, "the lease is held on the key's node");
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600);
        await other.lock!(async () => {
          await other.load();
          await other.save(login(secret(2)));
        });
        await store.save(login(secret(3)));
      }),
    );
    assert.equal(error.reason, "fenced");
    assert.deepEqual(await store.load(), login(secret(2)));
    assert.throws(() => redisStore({ client, key: "billing:login" }), /hash tag/);
  });
});

describe("loading the entry points", () => {
  /** The module URLs a fresh process resolves to import `specifiers`. */
  async function resolvedBy(specifiers: readonly string[]): Promise<string[]> {
    const folder = await mkdtemp(join(tmpdir(), "connect-oidc-redis-imports-"));
    const log = join(folder, "modules.log");
    try {
      const code = specifiers.map((s) => `await import(${JSON.stringify(new URL(s, import.meta.url).href)});`).join("\n");
      const child = spawn(process.execPath, ["--import", "tsx", ...moduleLogArgs(log), "--input-type=module", "-e", code], {
        stdio: "inherit",
      });
      const [status] = await once(child, "exit");
      assert.equal(status, 0);
      return (await readFile(log, "utf8")).split("\n").filter(Boolean);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  }

  test("connect-oidc/redis does not load ioredis (the user passes the client in)", async () => {
    const urls = await resolvedBy(["../../src/redis.ts"]);
    assert.ok(
      urls.some((u) => u.endsWith("/src/redis/store.ts")),
      "the log sees the entry's modules",
    );
    assert.ok(!urls.some((u) => u.includes("/node_modules/ioredis/")), "ioredis was loaded");
  });

  test("connect-oidc and connect-oidc/node load nothing of Redis", async () => {
    const urls = await resolvedBy(["../../src/index.ts", "../../src/node.ts"]);
    assert.ok(
      urls.some((u) => u.endsWith("/src/node/file-store.ts")),
      "the log sees the entries' modules",
    );
    assert.deepEqual(
      urls.filter((u) => /\/src\/redis|ioredis/.test(u)),
      [],
    );
  });
});

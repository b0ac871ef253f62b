/**
 * Issue 16 A1: an endpoint read back from a store never receives a secret. Someone who can
 * write the store but holds no secret (a Redis user with write access and no
 * `encryptionKey`, a file another process of the user can write) plants a login whose
 * `discovery.token_endpoint` (as versions before issue 16 kept it with the login) names their
 * own server. A real listener on loopback stands in for that server and records every
 * request: it must receive nothing — no client secret (basic or post), no private_key_jwt
 * assertion, no public client's refresh token — while the refresh still succeeds against
 * the real identity provider, after at most one discovery. On fileStore and on redisStore
 * (a real redis-server). The metadata this process discovered serves its later refreshes
 * for a day of its monotonic clock (a wall-clock step changes nothing).
 *
 * Reproduce: node --import tsx --test test/integration/stored-discovery-trust.test.ts
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { createTokenManager, memoryStore, type StoredTokens, type TokenManagerOptions, type TokenStore } from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { redisStore } from "../../src/redis.js";
import { storedLogin } from "../support/cold-login.js";
import { type IdpRequests, watchIdpRequests } from "../support/cold-requests.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock } from "../support/manual-clock.js";
import { type RedisServer, redisServerMissing, startRedisServer } from "../support/redis-server.js";

const HOUR = 3600_000;
const redisMissing = redisServerMissing();
if (redisMissing !== undefined && process.env.CI === "true") {
  test("redis-server is available in CI", () => assert.fail(redisMissing));
}

/** What the attacker's server saw of one request. */
interface Captured {
  readonly method: string;
  readonly url: string;
  readonly authorization: string | undefined;
  readonly body: string;
}

/** The attacker's token endpoint: records every request, answers 404 (so the victim's refresh would still go on quietly). */
async function startAttacker(): Promise<{ readonly url: string; readonly seen: Captured[]; close(): Promise<void> }> {
  const seen: Captured[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        authorization: req.headers.authorization,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/token`,
    seen,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

let idp: Idp;
let attacker: Awaited<ReturnType<typeof startAttacker>>;
let requests: IdpRequests;
let folder: string;
let redis: RedisServer | undefined;
const clients: Redis[] = [];
const leaks = createLeakScanner();

before(async () => {
  [idp, attacker, folder] = await Promise.all([
    startIdp({ accessTokenTtl: 3600 }),
    startAttacker(),
    mkdtemp(join(tmpdir(), "connect-oidc-discovery-trust-")),
  ]);
  if (redisMissing === undefined) redis = await startRedisServer();
  requests = watchIdpRequests(idp.issuer);
  leaks.remember(idp.serviceClient.clientSecret, idp.postClient.clientSecret);
});

after(async () => {
  requests?.stop();
  for (const c of clients) c.disconnect();
  await redis?.close();
  await attacker?.close();
  await idp?.close();
  await rm(folder, { recursive: true, force: true });
});

/** The provider's real metadata, its token endpoint replaced by the attacker's: as an earlier version stored it, dated now. */
async function plantedDiscovery() {
  const document = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
  return {
    fetchedAt: Date.now(),
    metadata: {
      issuer: document.issuer as string,
      token_endpoint: attacker.url,
      token_endpoint_auth_methods_supported: document.token_endpoint_auth_methods_supported as string[],
      id_token_signing_alg_values_supported: document.id_token_signing_alg_values_supported as string[],
    },
  };
}

/** A store of each kind, and how the attacker writes its raw text (no secret needed). */
interface StoreKind {
  readonly name: string;
  readonly skip: string | undefined;
  make(id: string): { readonly store: TokenStore; plant(text: string): Promise<void> };
}

const storeKinds: readonly StoreKind[] = [
  {
    name: "fileStore",
    skip: undefined,
    make(id) {
      const path = join(folder, `${id}.json`);
      return { store: fileStore(path), plant: (text) => writeFile(path, text, { mode: 0o600 }) };
    },
  },
  {
    name: "redisStore",
    skip: redisMissing,
    make(id) {
      const client = new Redis(redis!.url);
      client.on("error", () => {});
      clients.push(client);
      const key = `trust:{${id}}`;
      // The store's layout (a hash of version and value), written by a Redis user with write access.
      return { store: redisStore({ client, key }), plant: async (text) => void (await client.hset(key, "version", "1", "value", text)) };
    },
  },
];

/** A client of the test IdP, the expired login the store holds for it, and its manager's options. */
interface ClientKind {
  readonly name: string;
  login(): Promise<StoredTokens>;
  options(): Omit<TokenManagerOptions, "store">;
}

/** An expired client-credentials token as the store holds it for `clientId`. */
const expiredServiceToken = (clientId: string): StoredTokens => ({
  version: 1,
  issuer: idp.issuer,
  clientId,
  accessToken: `expired-service-token-${clientId}`,
  issuedAt: Date.now() - 3 * HOUR,
  expiresAt: Date.now() - 2 * HOUR,
});

const service = (clientId: string) => ({
  issuer: idp.issuer,
  clientId,
  grant: "client_credentials" as const,
  resource: idp.audience,
  allowInsecureRequests: true as const,
});

const clientKinds: readonly ClientKind[] = [
  {
    name: "a public client's refresh token",
    login: () => storedLogin(idp, -2 * HOUR),
    options: () => ({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true }),
  },
  {
    name: "client_secret_basic",
    login: async () => expiredServiceToken(idp.serviceClient.clientId),
    options: () => ({
      ...service(idp.serviceClient.clientId),
      clientSecret: idp.serviceClient.clientSecret,
      clientAuthentication: "client_secret_basic",
    }),
  },
  {
    name: "client_secret_post",
    login: async () => expiredServiceToken(idp.postClient.clientId),
    options: () => ({
      ...service(idp.postClient.clientId),
      clientSecret: idp.postClient.clientSecret,
      clientAuthentication: "client_secret_post",
    }),
  },
  {
    name: "private_key_jwt",
    login: async () => expiredServiceToken(idp.jwtClient.clientId),
    options: () => ({
      ...service(idp.jwtClient.clientId),
      clientPrivateKey: { key: idp.jwtClient.privateKey, kid: idp.jwtClient.kid },
      clientAuthentication: "private_key_jwt",
    }),
  },
];

let cases = 0;
for (const kind of storeKinds) {
  describe(`a token endpoint planted in ${kind.name}`, { skip: kind.skip }, () => {
    for (const client of clientKinds) {
      test(`${client.name}: the planted endpoint receives nothing; the refresh succeeds at the issuer after at most one discovery`, async () => {
        cases += 1;
        const { store, plant } = kind.make(`case-${cases}`);
        const login = await client.login();
        leaks.remember(login.accessToken, login.refreshToken);
        await plant(JSON.stringify({ ...login, discovery: await plantedDiscovery() }));
        attacker.seen.length = 0;
        requests.reset();
        const tokenRequests = idp.stats.tokenRequests;
        const manager = createTokenManager({ ...client.options(), store });
        let token: string;
        try {
          token = await manager.getAccessToken();
        } finally {
          manager.close();
        }
        leaks.remember(token);
        assert.deepEqual(
          attacker.seen.map((r) => `${r.method} ${r.url}`),
          [],
          "the endpoint read back from the store received a request",
        );
        assert.notEqual(token, login.accessToken, "a new token from the real identity provider");
        assert.equal(idp.stats.tokenRequests - tokenRequests, 1, "one token request, at the issuer's own endpoint");
        assert.ok(requests.discovery <= 1, `at most one discovery, saw: ${requests.seen.join(", ")}`);
        assert.deepEqual(requests.seen, ["GET /.well-known/openid-configuration", "POST /token"]);
        const after = (await store.load()) as unknown as Record<string, unknown>;
        assert.equal(after.discovery, undefined, "the planted metadata is not written back");
        assert.equal(after.accessToken, token);
      });
    }
  });
}

describe("the metadata a process discovered", () => {
  test("serves its refreshes for 24 h of its monotonic clock, then is discovered again; a wall-clock step does not age it", async () => {
    const clock = createManualClock();
    const manager = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      refreshWindowMs: 0, // refreshed only when a call finds the token expired
      clock,
    });
    try {
      const login = await idp.login();
      leaks.remember(login.access_token, login.refresh_token);
      await manager.setTokens(login);
      const refreshAfter = async (ms: number) => {
        await clock.advance(ms);
        requests.reset();
        leaks.remember(await manager.getAccessToken());
        return [...requests.seen];
      };
      const discoveryThenToken = ["GET /.well-known/openid-configuration", "POST /token"];
      assert.deepEqual(await refreshAfter(2 * HOUR), discoveryThenToken, "the first refresh discovers");
      assert.deepEqual(await refreshAfter(2 * HOUR), ["POST /token"], "the next one uses what this process discovered");
      await clock.stepWall(30 * 24 * HOUR); // the wall clock jumps a month; the monotonic clock does not
      assert.deepEqual(await refreshAfter(0), ["POST /token"], "a wall-clock step does not age the metadata");
      assert.deepEqual(await refreshAfter(23 * HOUR), discoveryThenToken, "25 h after the discovery: discovered again");
    } finally {
      manager.close();
    }
  });
});

describe("the store's lock", () => {
  test("is taken after discovery: the lock holder waits for the token request alone (one discovery, never asked twice)", async () => {
    const clock = createManualClock();
    const inner = memoryStore();
    let holding = false;
    /** For each IdP request as it arrived: whether the store's lock was held then. */
    const arrivals: string[] = [];
    const store: TokenStore = {
      load: () => inner.load(),
      save: (tokens) => inner.save(tokens),
      clear: () => inner.clear(),
      lock: (fn, signal) =>
        inner.lock!(async (hold) => {
          holding = true;
          try {
            return await fn(hold);
          } finally {
            holding = false;
          }
        }, signal),
    };
    const manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store, clock });
    try {
      const login = await idp.login();
      leaks.remember(login.access_token, login.refresh_token);
      await manager.setTokens(login);
      requests.reset();
      // Whether the store's lock is held as each request reaches the IdP (it runs in this process).
      const onRequest = () => {
        arrivals.push(holding ? "under the lock" : "outside the lock");
      };
      subscribe("http.server.request.start", onRequest);
      try {
        await clock.advance(2 * HOUR); // the proactive refresh may start here, in the background
        leaks.remember(await manager.getAccessToken());
      } finally {
        unsubscribe("http.server.request.start", onRequest);
      }
      assert.deepEqual(requests.seen, ["GET /.well-known/openid-configuration", "POST /token"], "one discovery, one token request");
      assert.deepEqual(arrivals, ["outside the lock", "under the lock"], "discovery before the lock, the token request under it");
    } finally {
      manager.close();
    }
  });
});

/**
 * Cold start (issue 13): a process that lives for one call. Children run a plain-JavaScript
 * copy of src/ (ESM, and CommonJS as dist/cjs is made) with plain `node`, against a real
 * oidc-provider and a real connect-node server on loopback.
 *  - With a valid stored token, the call loads neither openid-client, nor @napi-rs/keyring
 *    (fileStore), nor proper-lockfile, nor jose (connect-oidc/server's): the module log of
 *    the ESM loader and the CommonJS module cache of the child say so.
 *  - With an expired token, the refresh costs two requests to the identity provider:
 *    discovery over the configured issuer, then the token endpoint. Provider metadata in the
 *    store (written by earlier versions) is ignored: an endpoint is never read back from a
 *    store (issue 16, test/integration/stored-discovery-trust.test.ts). Within a process, a token endpoint
 *    learned earlier that fails is discovered again, and the grant asked again only when the
 *    request provably never reached a token endpoint (404): a refresh token is never
 *    presented twice.
 *
 * Reproduce: node --import tsx --test test/system/cold-start.test.ts
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createTokenManager, TokenStoreError } from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { parseStoredTokens, serializeStoredTokens } from "../../src/stored-tokens.js";
import type { StoredTokens } from "../../src/types.js";
import { buildColdCopy, type ColdCopy, moduleLogArgs, runColdChild } from "../support/cold-build.js";
import type { ColdChildConfig } from "../support/cold-client.js";
import { packagesIn } from "../support/cold-packages.js";
import { storedLogin } from "../support/cold-login.js";
import { type IdpRequests, watchIdpRequests } from "../support/cold-requests.js";
import { type Idp, startIdp } from "../support/idp.js";
import { type PrivateKeyring, startPrivateKeyring } from "../support/keyring-session.js";
import { createManualClock } from "../support/manual-clock.js";
import { startServer, type TestServer } from "../support/server.js";

const HOUR = 3600_000;
// jose: only connect-oidc/server (and openid-client, on a refresh) load it; a client with a valid token never does.
// @opentelemetry/api: only connect-oidc/otel imports it (an optional peer), at no point the client entries.
const HEAVY = ["openid-client", "@napi-rs/keyring", "proper-lockfile", "jose", "@opentelemetry/api"] as const;

let folder: string;
let idp: Idp;
let server: TestServer;
let requests: IdpRequests;
const copies: Partial<Record<"esm" | "cjs", ColdCopy>> = {};

before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-cold-"));
  [copies.esm, copies.cjs, idp] = await Promise.all([buildColdCopy("esm"), buildColdCopy("cjs"), startIdp({ accessTokenTtl: 3600 })]);
  server = await startServer({ idp, http2: false });
  requests = watchIdpRequests(idp.issuer);
});

after(async () => {
  requests?.stop();
  await server?.close();
  await idp?.close();
  await Promise.all([copies.esm?.remove(), copies.cjs?.remove()]);
  await rm(folder, { recursive: true, force: true });
});

let files = 0;
function fileConfig(): ColdChildConfig {
  files += 1;
  return {
    baseUrl: server.baseUrl,
    issuer: idp.issuer,
    clientId: idp.clientId,
    store: { kind: "file", path: join(folder, `tokens-${files}.json`) },
    report: true,
  };
}

async function seed(copy: ColdCopy, config: ColdChildConfig, tokens: StoredTokens, env?: NodeJS.ProcessEnv): Promise<void> {
  await runColdChild(copy, "test/support/cold-seed.ts", { store: config.store, tokens }, env === undefined ? {} : { env });
}

/** One call in a fresh process; the packages it loaded (ESM loader log and CommonJS cache). */
async function callInFreshProcess(copy: ColdCopy, config: ColdChildConfig, env?: NodeJS.ProcessEnv) {
  files += 1;
  const log = join(folder, `modules-${files}.log`);
  const { report } = await runColdChild(copy, "test/support/cold-client.ts", config, {
    nodeArgs: moduleLogArgs(log),
    ...(env === undefined ? {} : { env }),
  });
  const esm = (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);
  const loaded = new Set([...packagesIn(esm), ...(report.packages ?? [])]);
  return { report, loaded, esm };
}

for (const format of ["esm", "cjs"] as const) {
  describe(`cold start, ${format === "esm" ? "ESM" : "the CommonJS build"}`, () => {
    test("a fresh process with a valid stored token (fileStore) calls without loading openid-client, @napi-rs/keyring or proper-lockfile", async () => {
      const copy = copies[format]!;
      const config = fileConfig();
      await seed(copy, config, await storedLogin(idp));
      const refreshes = idp.stats.tokenRequests;
      const { report, loaded, esm } = await callInFreshProcess(copy, config);
      assert.equal(report.reply, "cold");
      assert.equal(idp.stats.tokenRequests, refreshes, "no refresh");
      assert.deepEqual(report.idpRequests, [], "no request to the identity provider");
      assert.ok(loaded.has("@connectrpc/connect-node"), `the module log sees the packages loaded: ${[...loaded].join(", ")}`);
      for (const name of HEAVY) assert.ok(!loaded.has(name), `${name} was loaded: ${[...loaded].join(", ")}`);
      // Node built-ins that only a login, a save or a lock needs (the ESM loader logs them).
      if (format === "esm") {
        assert.ok(esm.includes("node:fs/promises"), "the module log sees built-ins");
        for (const name of ["node:child_process", "node:crypto"]) assert.ok(!esm.includes(name), `${name} was loaded`);
      }
    });

    test("a fresh process with an expired stored token loads openid-client and proper-lockfile on first use, and refreshes", async () => {
      const copy = copies[format]!;
      const config = fileConfig();
      await seed(copy, config, await storedLogin(idp, -2 * HOUR));
      const { report, loaded } = await callInFreshProcess(copy, config);
      assert.equal(report.reply, "cold");
      assert.ok(loaded.has("openid-client") && loaded.has("proper-lockfile"), `loaded: ${[...loaded].join(", ")}`);
      assert.ok(!loaded.has("@napi-rs/keyring"), "a fileStore never loads the keyring");
      assert.ok(!loaded.has("@opentelemetry/api"), "a refresh never loads OpenTelemetry (connect-oidc/otel alone does)");
    });
  });
}

describe("cold start with DPoP (issue 12)", () => {
  let dpopIdp: Idp;
  let dpopServer: TestServer;
  before(async () => {
    dpopIdp = await startIdp({ accessTokenTtl: 3600, dpop: { requireNonce: true } });
    dpopServer = await startServer({ idp: dpopIdp, http2: false, dpop: { requireNonce: true } });
  });
  after(async () => {
    await dpopServer?.close();
    await dpopIdp?.close();
  });

  for (const format of ["esm", "cjs"] as const) {
    test(`${format === "esm" ? "ESM" : "CommonJS"}: a valid DPoP-bound stored token: proofs signed, the call passes, openid-client never loaded`, async () => {
      const copy = copies[format]!;
      const config: ColdChildConfig = { ...fileConfig(), baseUrl: dpopServer.baseUrl, issuer: dpopIdp.issuer, dpop: true };
      await seed(copy, config, await storedLogin(dpopIdp, 0, { dpop: true }));
      dpopServer.resetStats();
      const tokenRequests = dpopIdp.stats.tokenRequests;
      const { report, loaded } = await callInFreshProcess(copy, config);
      assert.equal(report.reply, "cold", report.error);
      assert.equal(dpopIdp.stats.tokenRequests, tokenRequests, "no refresh");
      assert.deepEqual(report.idpRequests, [], "no request to the identity provider");
      // The server's nonce demand, then the call re-sent with it.
      assert.deepEqual(
        dpopServer.stats.requests.map((r) => r.dpop?.ok),
        [false, true],
      );
      for (const name of HEAVY) assert.ok(!loaded.has(name), `${name} was loaded: ${[...loaded].join(", ")}`);
    });
  }
});

describe("cold start, keyringStore", () => {
  let keyring: PrivateKeyring | string;
  before(async () => {
    keyring = process.platform === "linux" ? await startPrivateKeyring() : "the keyring tests drive gnome-keyring and run on Linux only";
  });
  after(async () => {
    if (typeof keyring !== "string") await keyring.stop();
  });

  test("a fresh process with a valid stored token loads the keyring, but neither openid-client nor proper-lockfile", async (t) => {
    if (typeof keyring === "string") return t.skip(keyring);
    const copy = copies.esm!;
    const config: ColdChildConfig = { ...fileConfig(), store: { kind: "keyring", service: "connect-oidc-cold-test", account: "valid" } };
    await seed(copy, config, await storedLogin(idp), keyring.env);
    const { report, loaded } = await callInFreshProcess(copy, config, keyring.env);
    assert.equal(report.reply, "cold");
    assert.ok(loaded.has("@napi-rs/keyring"), `loaded: ${[...loaded].join(", ")}`);
    assert.ok(!loaded.has("openid-client") && !loaded.has("proper-lockfile"), `loaded: ${[...loaded].join(", ")}`);
  });
});

/** The provider's metadata as versions before issue 16 stored it with a login, fetched now. */
async function discoveryRecord(change: Record<string, string> = {}) {
  const document = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
  return {
    fetchedAt: Date.now(),
    metadata: {
      issuer: document.issuer as string,
      token_endpoint: document.token_endpoint as string,
      token_endpoint_auth_methods_supported: document.token_endpoint_auth_methods_supported as string[],
      id_token_signing_alg_values_supported: document.id_token_signing_alg_values_supported as string[],
      ...change,
    },
  };
}

/** The store's text: a login as an earlier version wrote it, with the provider's metadata. */
async function withDiscovery(login: StoredTokens, change: Record<string, string> = {}): Promise<StoredTokens> {
  return { ...login, discovery: await discoveryRecord(change) } as StoredTokens;
}

/** Write `tokens` as the token file's text as it is (the fileStore would drop `discovery`). */
async function writeTokenFile(path: string, tokens: StoredTokens): Promise<void> {
  await writeFile(path, JSON.stringify(tokens), { mode: 0o600 });
}

describe("cold refresh: a fresh process with an expired stored token", () => {
  const copy = () => copies.esm!;

  test("right after a login: discovery and the refresh, 2 requests; the store holds no provider metadata", async () => {
    const config = fileConfig();
    await seed(copy(), config, await storedLogin(idp, -2 * HOUR));
    requests.reset();
    const { report } = await callInFreshProcess(copy(), config);
    assert.equal(report.reply, "cold");
    assert.deepEqual(requests.seen, ["GET /.well-known/openid-configuration", "POST /token"]);
    assert.deepEqual(report.idpRequests, requests.seen, "the child counted what the IdP saw");
    const text = await readFile((config.store as { path: string }).path, "utf8");
    assert.ok(!text.includes("discovery") && !text.includes("token_endpoint"), "no endpoint written to the store");
  });

  test("a login stored by a refresh: the next fresh process pays the same 2 requests (one discovery)", async () => {
    const config = fileConfig();
    const path = (config.store as { path: string }).path;
    await seed(copy(), config, await storedLogin(idp, -2 * HOUR));
    await callInFreshProcess(copy(), config);
    const refreshed = (await fileStore(path).load())!;
    await fileStore(path).save({ ...refreshed, issuedAt: refreshed.issuedAt! - 2 * HOUR, expiresAt: refreshed.expiresAt! - 2 * HOUR });
    requests.reset();
    const { report } = await callInFreshProcess(copy(), config);
    assert.equal(report.reply, "cold");
    assert.deepEqual(requests.seen, ["GET /.well-known/openid-configuration", "POST /token"]);
  });

  for (const format of ["esm", "cjs"] as const) {
    test(`${format === "esm" ? "ESM" : "CommonJS"}: the provider's metadata in the store (an earlier version's file) is ignored: one discovery, one refresh`, async () => {
      const config = fileConfig();
      const path = (config.store as { path: string }).path;
      await writeTokenFile(path, await withDiscovery(await storedLogin(idp, -2 * HOUR)));
      requests.reset();
      const tokenRequests = idp.stats.tokenRequests;
      const { report } = await callInFreshProcess(copies[format]!, config);
      assert.equal(report.reply, "cold");
      assert.deepEqual(requests.seen, ["GET /.well-known/openid-configuration", "POST /token"]);
      assert.equal(idp.stats.tokenRequests - tokenRequests, 1, "the IdP's own count agrees");
      assert.ok(!(await readFile(path, "utf8")).includes("discovery"), "the refresh wrote the login without it");
    });
  }
});

describe("token endpoints that fail", () => {
  /** A manager on a file store holding an expired login (with `discovery` as an earlier version wrote it, if given). */
  async function refreshWith(change?: Record<string, string>) {
    const config = fileConfig();
    const path = (config.store as { path: string }).path;
    const store = fileStore(path);
    const login = await storedLogin(idp, -2 * HOUR);
    await writeTokenFile(path, change === undefined ? login : await withDiscovery(login, change));
    const manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store });
    requests.reset();
    const invalidGrants = idp.stats.invalidGrant;
    try {
      await manager.getAccessToken();
    } finally {
      manager.close();
    }
    assert.equal(idp.stats.invalidGrant, invalidGrants, "no refresh token presented twice");
    return { stored: await store.load() };
  }

  test("a stored token endpoint that moved (404) is never asked: the issuer's discovery names the endpoint", async () => {
    const { stored } = await refreshWith({ token_endpoint: `${idp.issuer}/moved-away` });
    assert.deepEqual(requests.seen, ["GET /.well-known/openid-configuration", "POST /token"]);
    assert.equal((stored as unknown as Record<string, unknown> | undefined)?.discovery, undefined);
  });

  test("a stored token endpoint that refuses connections is never tried", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    await refreshWith({ token_endpoint: `http://127.0.0.1:${port}/token` });
    assert.deepEqual(requests.seen, ["GET /.well-known/openid-configuration", "POST /token"]);
  });

  test("a token endpoint this process discovered answers 404 (moved): discovered again and asked again once", async () => {
    const config = fileConfig();
    const store = fileStore((config.store as { path: string }).path);
    await store.save(await storedLogin(idp, -2 * HOUR));
    const clock = createManualClock();
    const manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store, clock });
    const invalidGrants = idp.stats.invalidGrant;
    try {
      const first = await manager.getAccessToken();
      idp.setTokenOutage(404);
      requests.reset();
      await assert.rejects(manager.getAccessToken({ rejected: first }));
      assert.deepEqual(requests.seen, ["POST /token", "GET /.well-known/openid-configuration", "POST /token"]);
      assert.equal(idp.stats.invalidGrant, invalidGrants, "the refresh token was never taken, so never presented to a taker twice");
    } finally {
      idp.setTokenOutage(undefined);
      manager.close();
    }
  });

  test("an answer that may have consumed the refresh token (500): not asked again; the next attempt reuses this process's discovery", async () => {
    const config = fileConfig();
    const store = fileStore((config.store as { path: string }).path);
    await store.save(await storedLogin(idp, -2 * HOUR));
    const clock = createManualClock();
    const manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store, clock });
    try {
      idp.setTokenOutage(500);
      requests.reset();
      await assert.rejects(manager.getAccessToken());
      assert.deepEqual(requests.seen, ["GET /.well-known/openid-configuration", "POST /token"], "one token request: never presented twice");
      idp.setTokenOutage(undefined);
      await clock.advance(2_000);
      requests.reset();
      await manager.getAccessToken();
      assert.deepEqual(requests.seen, ["POST /token"]);
    } finally {
      idp.setTokenOutage(undefined);
      manager.close();
    }
  });

  test("a processed answer that openid-client rejects (rotated refresh token kept): not asked again", async () => {
    const config = fileConfig();
    const path = (config.store as { path: string }).path;
    const store = fileStore(path);
    const login = await storedLogin(idp, -2 * HOUR);
    await writeTokenFile(path, await withDiscovery(login));
    const clock = createManualClock();
    const manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store, clock });
    const invalidGrants = idp.stats.invalidGrant;
    try {
      idp.rewriteTokenResponse((body) => ({ ...body, expires_in: -5 }));
      requests.reset();
      await assert.rejects(manager.getAccessToken());
      assert.deepEqual(requests.seen, ["GET /.well-known/openid-configuration", "POST /token"]);
      const kept = await store.load();
      assert.notEqual(kept?.refreshToken, login.refreshToken, "the rotated refresh token is kept");
      assert.ok(!(await readFile(path, "utf8")).includes("discovery"), "the old file's metadata is not written back");
      idp.rewriteTokenResponse(undefined);
      await clock.advance(2_000);
      await manager.getAccessToken();
      assert.equal(idp.stats.invalidGrant, invalidGrants);
    } finally {
      idp.rewriteTokenResponse(undefined);
      manager.close();
    }
  });
});

describe("StoredTokens.discovery (written by earlier versions) in the store's text", () => {
  const login = { version: 1, issuer: "https://id.example", clientId: "cli", accessToken: "at", expiresAt: 1 } as const;
  const discovery = {
    fetchedAt: 1_700_000_000_000,
    metadata: {
      issuer: "https://id.example",
      token_endpoint: "https://id.example/token",
      token_endpoint_auth_methods_supported: ["none", "client_secret_basic"],
      id_token_signing_alg_values_supported: ["RS256"],
    },
  };

  test("read and dropped, never written: the login is read without it", () => {
    const text = serializeStoredTokens({ ...login, discovery } as StoredTokens);
    assert.ok(!text.includes("discovery") && !text.includes("token_endpoint"), text);
    const parsed = parseStoredTokens(JSON.stringify({ ...login, discovery }), "test") as unknown as Record<string, unknown>;
    assert.equal(parsed.discovery, undefined);
    assert.equal(parsed.accessToken, "at");
  });

  test("any shape of it is ignored, not corrupt", () => {
    const wrong: unknown[] = [
      "x",
      null,
      [],
      { ...discovery, fetchedAt: "now" },
      { fetchedAt: 1 },
      { ...discovery, metadata: { ...discovery.metadata, token_endpoint: "ftp://id.example/token" } },
      { ...discovery, metadata: { ...discovery.metadata, issuer: 42 } },
    ];
    for (const value of wrong) {
      let parsed: Record<string, unknown> | undefined;
      assert.doesNotThrow(() => {
        parsed = parseStoredTokens(JSON.stringify({ ...login, discovery: value }), "test") as unknown as Record<string, unknown>;
      }, TokenStoreError);
      assert.equal(parsed?.discovery, undefined, JSON.stringify(value));
      assert.equal(parsed?.accessToken, "at");
    }
  });
});

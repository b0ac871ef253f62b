/**
 * `connect-oidc/testing`'s identity provider as a user's test meets it: started with one call,
 * its login handed straight to a real token manager, its tokens checked as a resource server
 * would (jose against its JWKS), DPoP on and off, client credentials, and each knob
 * (revocation, outage, latency) seen from openid-client or the token manager; startTestServer
 * (h2c, per-method scopes, configuration, close); that no other entry point of the built
 * package loads oidc-provider; and that the testing guide's integration test is the one npm test runs.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import * as oidc from "openid-client";
import { Code, ConnectError, type ConnectRouter, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { ConfigurationError, createTokenManager, ReauthRequiredError, TokenRefreshError } from "../../src/index.js";
import { verifiedTokenKey } from "../../src/server.js";
import { startTestIdentityProvider, startTestServer, type TestIdentityProvider } from "../../src/testing.js";
import { buildColdCopy, moduleLogArgs } from "../support/cold-build.js";
import { packagesIn } from "../support/cold-packages.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock } from "../support/manual-clock.js";

const leaks = createLeakScanner();

async function verifyAccessToken(idp: TestIdentityProvider, token: string) {
  const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(idp.jwksUri)), {
    issuer: idp.issuer,
    audience: idp.audience,
    typ: "at+jwt",
  });
  return { payload, protectedHeader };
}

describe("startTestIdentityProvider: defaults", () => {
  let idp: TestIdentityProvider;
  before(async () => {
    idp = await startTestIdentityProvider();
  });
  after(() => idp.close());

  it("a headless login is what setTokens takes: a token manager hands out its RFC 9068 access token", async () => {
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    assert.equal(login.token_type.toLowerCase(), "bearer");
    assert.ok(login.refresh_token, "a refresh token is always issued");
    const { exp, iat } = (await verifyAccessToken(idp, login.access_token)).payload;
    assert.equal(exp! - iat!, 5, "5-second access tokens by default");
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    await tokens.setTokens(login);
    const token = await tokens.getAccessToken();
    assert.equal(token, login.access_token);
    const { payload, protectedHeader } = await verifyAccessToken(idp, token);
    assert.equal(protectedHeader.typ, "at+jwt");
    assert.equal(protectedHeader.alg, "RS256");
    assert.equal(payload.sub, idp.accountId);
    assert.equal(payload.client_id, idp.clientId);
    assert.deepEqual(String(payload.scope).split(" ").sort(), ["api"]);
  });

  it("refresh tokens rotate: a re-used refresh token answers invalid_grant and ends the whole login", async () => {
    const login = await idp.login();
    const config = await idp.cliConfig();
    idp.resetStats();
    const rotated = await oidc.refreshTokenGrant(config, login.refresh_token!);
    assert.ok(rotated.refresh_token && rotated.refresh_token !== login.refresh_token, "a new refresh token");
    // A copy of the old refresh token, used elsewhere: invalid_grant, and the newest one is dead too.
    await assert.rejects(oidc.refreshTokenGrant(config, login.refresh_token!), { error: "invalid_grant" });
    await assert.rejects(oidc.refreshTokenGrant(config, rotated.refresh_token), { error: "invalid_grant" });
    // A token manager holding that login is told to log in again.
    const clock = createManualClock();
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, clock });
    await tokens.setTokens(rotated);
    await clock.advance(10_000); // the 5-second access token expired
    await assert.rejects(tokens.getAccessToken(), ReauthRequiredError);
    assert.equal(idp.stats.byGrantType.refresh_token, 4);
    assert.equal(idp.stats.invalidGrant, 3);
  });

  it("client credentials: the service client's secret gets a token for the audience", async () => {
    using tokens = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.serviceClient.clientId,
      clientSecret: idp.serviceClient.clientSecret,
      grant: "client_credentials",
      scope: "api",
      allowInsecureRequests: true,
    });
    const { payload } = await verifyAccessToken(idp, await tokens.getAccessToken());
    assert.equal(payload.client_id, idp.serviceClient.clientId);
    assert.equal(payload.scope, "api");
    assert.equal(idp.stats.byGrantType.client_credentials >= 1, true);
  });

  it("revokeLogin(refreshToken) ends that login only: its refresh answers invalid_grant, another login refreshes", async () => {
    const [gone, kept] = await Promise.all([idp.login(), idp.login()]);
    await idp.revokeLogin(gone.refresh_token);
    const config = await idp.cliConfig();
    await assert.rejects(oidc.refreshTokenGrant(config, gone.refresh_token!), { error: "invalid_grant" });
    const refreshed = await oidc.refreshTokenGrant(config, kept.refresh_token!);
    assert.ok(refreshed.access_token);
  });

  it("setTokenOutage(503) answers temporarily_unavailable with retry-after; the token manager says wait, then recovers", async () => {
    const login = await idp.login();
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    await tokens.setTokens(login);
    idp.resetStats();
    idp.setTokenOutage(503);
    try {
      const error = await tokens.getAccessToken({ rejected: login.access_token }).then(
        () => assert.fail("refreshed during the outage"),
        (err: unknown) => err,
      );
      assert.ok(error instanceof TokenRefreshError, String(error));
      leaks.assertClean(error, "outage error");
      assert.equal(idp.stats.outages, 1);
      assert.equal(idp.stats.errors.temporarily_unavailable, 1);
    } finally {
      idp.setTokenOutage(undefined);
    }
    // The refresh token was not consumed by the outage: the same login refreshes now.
    const config = await idp.cliConfig();
    assert.ok((await oidc.refreshTokenGrant(config, login.refresh_token!)).access_token);
  });

  it('setTokenOutage("no-answer") holds the request until the client gives up; ending it lets a waiting one through', async () => {
    const login = await idp.login();
    const config = await idp.cliConfig();
    idp.setTokenOutage("no-answer");
    try {
      // openid-client with a 1-second timeout, as a client that gives up would be.
      const impatient = await oidc.discovery(new URL(idp.issuer), idp.clientId, undefined, oidc.None(), {
        execute: [oidc.allowInsecureRequests],
        timeout: 1,
      });
      const started = performance.now();
      await assert.rejects(oidc.refreshTokenGrant(impatient, login.refresh_token!), { code: "OAUTH_TIMEOUT" });
      assert.ok(performance.now() - started >= 990, "the refresh hung until the client's timeout");
      const waiting = oidc.refreshTokenGrant(config, login.refresh_token!);
      setTimeout(() => idp.setTokenOutage(undefined), 200);
      assert.ok((await waiting).access_token, "processed once the outage ended");
    } finally {
      idp.setTokenOutage(undefined);
    }
  });

  it("setTokenLatency delays the token endpoint by at least that much", async () => {
    const config = await idp.serviceConfig();
    idp.setTokenLatency(400);
    try {
      const started = performance.now();
      await oidc.clientCredentialsGrant(config);
      assert.ok(performance.now() - started >= 400, "answered after the latency");
    } finally {
      idp.setTokenLatency(0);
    }
  });
});

describe("startTestIdentityProvider: DPoP", () => {
  it("login({ dpop: true }) binds the login to a new key that setTokens keeps; refreshes stay bound (nonces required)", async () => {
    await using idp = await startTestIdentityProvider({ dpop: { requireNonce: true }, accessTokenTtl: 30 });
    const login = await idp.login({ dpop: true });
    assert.equal(login.token_type.toLowerCase(), "dpop");
    assert.ok(login.dpopKey, "the key comes back as dpopKey");
    const { payload } = await verifyAccessToken(idp, login.access_token);
    const jkt = (payload.cnf as { jkt?: string } | undefined)?.jkt;
    const handle = oidc.getDPoPHandle(await idp.cliConfig(), login.dpopKey.keyPair);
    assert.equal(jkt, await handle.calculateThumbprint(), "cnf.jkt is the key's thumbprint");

    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, dpop: true, allowInsecureRequests: true });
    await tokens.setTokens(login);
    const fresh = await tokens.getAccessToken({ rejected: login.access_token });
    assert.notEqual(fresh, login.access_token);
    const refreshed = await verifyAccessToken(idp, fresh);
    assert.equal((refreshed.payload.cnf as { jkt?: string }).jkt, jkt, "the refreshed token is bound to the same key");
    assert.equal(idp.stats.errors.use_dpop_nonce, 2, "the code exchange and the refresh each met the nonce challenge once");
  });

  it("dpop: false: every token is a bearer token, and a DPoP login says to fix the configuration", async () => {
    await using idp = await startTestIdentityProvider({ dpop: false });
    await assert.rejects(idp.login({ dpop: true }), ConfigurationError);
    const login = await idp.login();
    assert.equal(login.token_type.toLowerCase(), "bearer");
    assert.equal(decodeProtectedHeader(login.access_token).typ, "at+jwt");
  });

  it("options: audience, API scopes, account and a token lifetime", async () => {
    await using idp = await startTestIdentityProvider({
      audience: "https://api.example.test",
      apiScopes: ["read", "write"],
      accountId: "alice",
      accessTokenTtl: 42,
    });
    const login = await idp.login({ scope: "openid offline_access read" });
    const times = (await verifyAccessToken(idp, login.access_token)).payload;
    assert.equal(times.exp! - times.iat!, 42);
    const { payload } = await verifyAccessToken(idp, login.access_token);
    assert.equal(payload.aud, "https://api.example.test");
    assert.equal(payload.sub, "alice");
    assert.equal(payload.scope, "read");
    const both = await verifyAccessToken(idp, (await idp.login()).access_token);
    assert.deepEqual(String(both.payload.scope).split(" ").sort(), ["read", "write"]);
  });
});

describe("close and dispose", () => {
  it("close() stops it (idempotent); await using closes it at the end of the block", async () => {
    let issuer: string;
    {
      await using idp = await startTestIdentityProvider();
      issuer = idp.issuer;
      assert.equal((await fetch(`${issuer}/.well-known/openid-configuration`)).status, 200);
    }
    await assert.rejects(fetch(`${issuer}/.well-known/openid-configuration`), "nothing listens after dispose");
    const idp = await startTestIdentityProvider();
    await Promise.all([idp.close(), idp.close()]);
    await assert.rejects(fetch(`${idp.issuer}/.well-known/openid-configuration`));
  });
});

describe("the other entry points never load oidc-provider", () => {
  it("importing connect-oidc, /node, /redis and /server of the built package loads no oidc-provider and no testing code", async () => {
    const copy = await buildColdCopy("esm");
    const log = join(tmpdir(), `connect-oidc-testing-modules-${process.pid}.log`);
    try {
      const entries = ["index", "node", "redis", "server"].map((name) => join(copy.dir, "pkg", "esm", `${name}.js`));
      const script = `for (const e of ${JSON.stringify(entries)}) await import(e);`;
      await promisify(execFile)(process.execPath, [...moduleLogArgs(log), "--input-type=module", "-e", script]);
      const loaded = (await readFile(log, "utf8")).split("\n").filter(Boolean);
      assert.ok(
        loaded.some((url) => url.endsWith("/redis.js")),
        "the log saw the entries",
      );
      assert.ok(!packagesIn(loaded).includes("oidc-provider"), `loaded: ${packagesIn(loaded).join(", ")}`);
      assert.ok(!loaded.some((url) => url.endsWith("/testing.js")), "no testing entry");
      // And the testing entry itself loads it only when a provider starts.
      const testingOnly = `await import(${JSON.stringify(join(copy.dir, "pkg", "esm", "testing.js"))});`;
      await rm(log, { force: true });
      await promisify(execFile)(process.execPath, [...moduleLogArgs(log), "--input-type=module", "-e", testingOnly]);
      const testingLoads = packagesIn((await readFile(log, "utf8")).split("\n"));
      assert.ok(!testingLoads.includes("oidc-provider"), "oidc-provider is imported when a provider starts");
      assert.ok(!testingLoads.includes("@connectrpc/connect-node"), "connect-node is imported when a server starts");
    } finally {
      await rm(log, { force: true });
      await copy.remove();
    }
  });
});

describe("startTestServer", () => {
  let idp: TestIdentityProvider;
  before(async () => {
    idp = await startTestIdentityProvider({ apiScopes: ["read", "write"], accessTokenTtl: 600 });
  });
  after(() => idp.close());

  const routes = (router: ConnectRouter) =>
    router.service(EchoService, { say: (req, ctx) => ({ text: req.text, subject: ctx.values.get(verifiedTokenKey)?.subject ?? "" }) });

  it("h2c, per-method scopes: a token without the scope is PermissionDenied with insufficient_scope, one with it passes", async () => {
    await using server = await startTestServer({
      identityProvider: idp,
      http2: true,
      methods: { "connectoidc.test.v1.EchoService/Say": ["write"] },
      routes,
    });
    assert.equal(server.http2, true);
    const client = async (scope: string) => {
      const { access_token } = await idp.login({ scope: `openid offline_access ${scope}` });
      const header: Interceptor = (next) => (req) => {
        req.header.set("authorization", `Bearer ${access_token}`);
        return next(req);
      };
      return createClient(EchoService, createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2", interceptors: [header] }));
    };
    const error = await (await client("read")).say({ text: "hi" }).then(
      () => assert.fail("accepted without the scope"),
      (err: unknown) => ConnectError.from(err),
    );
    assert.equal(error.code, Code.PermissionDenied);
    assert.match(error.metadata.get("www-authenticate") ?? "", /^Bearer error="insufficient_scope".*scope="write"/);
    assert.equal((await (await client("read write")).say({ text: "hi" })).subject, idp.accountId);
  });

  it("needs an identity provider or a verifier (ConfigurationError); close() ends it, idempotent", async () => {
    await assert.rejects(startTestServer({ routes }), ConfigurationError);
    const server = await startTestServer({ identityProvider: idp, routes });
    const url = `${server.baseUrl}/connectoidc.test.v1.EchoService/Say`;
    const refused = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.deepEqual([refused.status, refused.headers.get("www-authenticate")], [401, "Bearer"]);
    await Promise.all([server.close(), server[Symbol.asyncDispose]()]);
    await assert.rejects(fetch(url, { method: "POST", body: "{}" }), "nothing listens after close");
  });
});

describe("the testing guide", () => {
  it("the guide's integration test is test/system/readme-integration.test.ts, character for character (so npm test runs it)", async () => {
    const root = join(import.meta.dirname, "../..");
    const section = await readFile(join(root, "docs/guides/testing.md"), "utf8");
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    assert.equal(block, await readFile(join(root, "test/system/readme-integration.test.ts"), "utf8"));
    assert.ok(block.split("\n").length <= 31, "under 30 lines");
  });
});

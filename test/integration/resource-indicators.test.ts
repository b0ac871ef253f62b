/**
 * Audience-restricted tokens per service (issue 18 item 1, RFC 8707 resource indicators) on
 * the real identity provider and real connect-node servers: `tokens.forResource(resource)`
 * hands out tokens whose `aud` is that resource, obtained with the one login's refresh token;
 * each resource's server (jose verification of `aud`) refuses the others' tokens; a
 * resource's token is refreshed before it expires and when a server refuses it, kept with
 * the login in the store (a new manager serves it without asking the provider), saved
 * together with the rotated refresh token, bound to the login's DPoP key; the main token
 * behaves as before.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import {
  ConfigurationError,
  createAuthInterceptor,
  createTokenManager,
  ProviderConfigurationError,
  ReauthRequiredError,
  type StoredTokens,
  type TokenEvent,
  type TokenManagerOptions,
  type TokenProvider,
  type TokenStore,
} from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { parseStoredTokens, serializeStoredTokens } from "../../src/stored-tokens.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock } from "../support/manual-clock.js";
import { startServer, type TestServer } from "../support/server.js";

const EVENTS = "https://events.example.test";
const TOOLS = "https://tools.example.test";
const SESSIONS = "https://sessions.example.test";
const RESOURCES = [EVENTS, TOOLS, SESSIONS];
/** A resource the identity provider does not know. */
const UNKNOWN = "https://unknown.example.test";

const refusedResource = (e: unknown) => e instanceof ProviderConfigurationError && e.reason === "resource" && e.message.includes(UNKNOWN);

/** Waits until `check()` holds, at most `ms`; fails naming `what`. */
async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await sleep(10);
  }
}

const clientOf = (server: TestServer, provider: TokenProvider) =>
  createClient(
    EchoService,
    createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(provider)] }),
  );

describe("forResource (RFC 8707) on the real identity provider", () => {
  let idp: Idp;
  let folder: string;
  const servers = new Map<string, TestServer>();
  let mainServer: TestServer;
  const leaks = createLeakScanner();

  before(async () => {
    folder = await mkdtemp(join(tmpdir(), "connect-oidc-resources-"));
    idp = await startIdp({ accessTokenTtl: 60, rotateRefreshTokens: true, resources: RESOURCES });
    mainServer = await startServer({ idp, http2: false });
    for (const resource of RESOURCES) servers.set(resource, await startServer({ idp, audience: resource, http2: false }));
  });
  after(async () => {
    for (const server of servers.values()) await server.close();
    await mainServer?.close();
    await idp?.close();
    await rm(folder, { recursive: true, force: true });
  });

  const signedIn = async (extra: Partial<TokenManagerOptions> = {}) => {
    const tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, ...extra });
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    return { tokens, login };
  };

  it("each resource gets its own token (aud = the resource); each server refuses the others' tokens; the main token is unchanged", async () => {
    const { tokens, login } = await signedIn();
    using _ = tokens;
    idp.resetStats();
    for (const resource of RESOURCES) {
      const token = await tokens.forResource(resource).getAccessToken();
      leaks.remember(token);
      assert.equal(decodeJwt(token).aud, resource);
      // Every server: its own resource's token passes, the others' are refused.
      for (const [other, server] of servers) {
        const call = clientOf(server, { getAccessToken: async () => token }).say({ text: "hi" });
        if (other === resource) assert.equal((await call).text, "hi");
        else await assert.rejects(call, (e) => ConnectError.from(e).code === Code.Unauthenticated, `${other} refuses ${resource}'s token`);
      }
    }
    assert.equal(idp.stats.byGrantType.refresh_token, 3, "one refresh per resource");
    assert.equal(await tokens.forResource(EVENTS).getAccessToken(), await tokens.forResource(EVENTS).getAccessToken(), "cached");
    assert.equal(idp.stats.byGrantType.refresh_token, 3);
    // The main token: the login's, for the provider's audience, still served and accepted.
    assert.equal(await tokens.getAccessToken(), login.access_token);
    assert.equal((await clientOf(mainServer, tokens).say({ text: "main" })).text, "main");
    assert.equal(tokens.forResource(EVENTS), tokens.forResource(EVENTS), "one provider per resource");
    assert.equal(tokens.forResource(EVENTS).current(), await tokens.forResource(EVENTS).getAccessToken());
  });

  it("the interceptor calls each service with its own token, concurrently, one refresh at a time", async () => {
    const { tokens } = await signedIn();
    using _ = tokens;
    idp.resetStats();
    const calls = RESOURCES.flatMap((resource) =>
      Array.from({ length: 5 }, (_, i) => clientOf(servers.get(resource)!, tokens.forResource(resource)).say({ text: `${resource} ${i}` })),
    );
    const answers = await Promise.all(calls);
    assert.equal(answers.length, 15);
    assert.equal(idp.stats.byGrantType.refresh_token, 3, "one refresh per resource for 5 concurrent callers each");
    assert.equal(idp.stats.invalidGrant, 0, "the rotating refresh token was never presented twice");
  });

  it("every resource's token and the rotated refresh token are saved together; a new manager on the store serves them without asking", async () => {
    const path = join(folder, "restart", "tokens.json");
    const first = await signedIn({ store: fileStore(path) });
    const tokensBefore = new Map<string, string>();
    for (const resource of RESOURCES) tokensBefore.set(resource, await first.tokens.forResource(resource).getAccessToken());
    const stored = (await fileStore(path).load())!;
    assert.notEqual(stored.refreshToken, first.login.refresh_token, "rotated by the resources' refreshes");
    assert.equal(stored.accessToken, first.login.access_token, "the main token kept");
    for (const resource of RESOURCES) assert.equal(stored.resources?.[resource]?.accessToken, tokensBefore.get(resource));
    first.tokens.close();

    idp.resetStats();
    using second = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, store: fileStore(path), allowInsecureRequests: true });
    for (const resource of RESOURCES) {
      assert.equal(await second.forResource(resource).getAccessToken(), tokensBefore.get(resource), `${resource}'s stored token`);
    }
    assert.equal(await second.getAccessToken(), first.login.access_token);
    assert.equal(idp.stats.tokenRequests, 0, "no token request after the restart");
    // The stored refresh token is the live one: the next refresh works.
    const refreshed = await second.forResource(EVENTS).getAccessToken({ rejected: tokensBefore.get(EVENTS)! });
    assert.notEqual(refreshed, tokensBefore.get(EVENTS));
    assert.equal(idp.stats.invalidGrant, 0);
    leaks.remember(refreshed, stored.refreshToken);
  });

  it("a server's refusal of a resource's token: the interceptor retries with a new one for that resource only", async () => {
    const { tokens, login } = await signedIn();
    using _ = tokens;
    const events = tokens.forResource(EVENTS);
    const tools = tokens.forResource(TOOLS);
    const eventsToken = await events.getAccessToken();
    const toolsToken = await tools.getAccessToken();
    const server = servers.get(EVENTS)!;
    server.revoke(eventsToken); // as after a revocation: the server refuses this token from now on
    idp.resetStats();
    assert.equal((await clientOf(server, events).say({ text: "after revocation" })).text, "after revocation");
    assert.equal(idp.stats.byGrantType.refresh_token, 1, "one forced refresh");
    const newEvents = await events.getAccessToken();
    assert.notEqual(newEvents, eventsToken);
    assert.equal(await tools.getAccessToken(), toolsToken, "the other resource's token is unchanged");
    assert.equal(await tokens.getAccessToken(), login.access_token, "the main token is unchanged");
    leaks.remember(newEvents);
  });

  it("a resource's token is refreshed in the background before it expires, like the main one", async () => {
    const clock = createManualClock();
    const events: TokenEvent[] = [];
    const { tokens } = await signedIn({ clock, refreshWindowMs: 10_000, onEvent: (e) => events.push(e) });
    using _ = tokens;
    const provider = tokens.forResource(TOOLS);
    const first = await provider.getAccessToken();
    idp.resetStats();
    events.length = 0;
    await clock.advance(45_000); // 60 s token: not yet due (window min(10 s, 15 s))
    assert.equal(await provider.getAccessToken(), first);
    await clock.advance(6_000); // inside the window: the timer refreshes both the main token and TOOLS
    // One refresh at a time: the timer (on the manual clock) takes TOOLS after the main token.
    await until(() => {
      void clock.advance(10);
      return events.some((e) => e.type === "refreshed" && e.resource === TOOLS && e.reason === "proactive");
    }, "TOOLS refreshed in the background");
    const second = await provider.getAccessToken();
    assert.notEqual(second, first);
    assert.equal(decodeJwt(second).aud, TOOLS);
    const proactive = events.filter((e) => e.type === "refreshed" && e.reason === "proactive");
    assert.ok(
      proactive.some((e) => e.type === "refreshed" && e.resource === undefined),
      "the main token too",
    );
    assert.equal(idp.stats.invalidGrant, 0);
    leaks.remember(second);
  });

  it("a DPoP-bound login binds every resource's token to the same key", async () => {
    await using dpopIdp = await startIdp({ accessTokenTtl: 60, resources: [EVENTS], dpop: true });
    const server = await startServer({ idp: dpopIdp, audience: EVENTS, http2: false, dpop: {} });
    try {
      using tokens = createTokenManager({ issuer: dpopIdp.issuer, clientId: dpopIdp.clientId, allowInsecureRequests: true, dpop: true });
      const login = await dpopIdp.login({ dpop: true });
      leaks.remember(login.access_token, login.refresh_token);
      await tokens.setTokens(login);
      const events = tokens.forResource(EVENTS);
      assert.equal(events.dpop, tokens.dpop, "the login's prover");
      const token = await events.getAccessToken();
      leaks.remember(token);
      const jkt = (t: string) => (decodeJwt(t).cnf as { jkt?: string } | undefined)?.jkt;
      assert.ok(jkt(token) !== undefined, "DPoP-bound");
      assert.equal(jkt(token), jkt(login.access_token), "bound to the login's key");
      assert.equal((await clientOf(server, events).say({ text: "dpop" })).text, "dpop");
    } finally {
      await server.close();
    }
  });

  it("a resource the identity provider refuses (invalid_target) fails its callers alone, once; the main token and other resources go on", async () => {
    // Refresh tokens that do not rotate: oidc-provider consumes a rotating one before it checks the resource (next test).
    await using fixed = await startIdp({ accessTokenTtl: 60, rotateRefreshTokens: false, resources: [EVENTS] });
    using tokens = createTokenManager({ issuer: fixed.issuer, clientId: fixed.clientId, allowInsecureRequests: true });
    const login = await fixed.login();
    leaks.remember(login.access_token, login.refresh_token);
    await tokens.setTokens(login);
    fixed.resetStats();
    const unknown = tokens.forResource(UNKNOWN);
    await assert.rejects(unknown.getAccessToken(), refusedResource);
    await assert.rejects(unknown.getAccessToken(), refusedResource, "fails fast");
    assert.equal(unknown.current(), undefined);
    assert.equal(fixed.stats.byGrantType.refresh_token, 1, "asked once");
    assert.equal(await tokens.getAccessToken(), login.access_token, "the main token goes on");
    const events = await tokens.forResource(EVENTS).getAccessToken();
    assert.equal(decodeJwt(events).aud, EVENTS, "other resources go on");
    assert.equal(fixed.stats.invalidGrant, 0);
    leaks.remember(events);
  });

  it("with rotating refresh tokens, oidc-provider consumes the refresh token on invalid_target: the login ends once, no loop", async () => {
    const { tokens } = await signedIn();
    using _ = tokens;
    idp.resetStats();
    await assert.rejects(tokens.forResource(UNKNOWN).getAccessToken(), refusedResource);
    await assert.rejects(tokens.forResource(EVENTS).getAccessToken(), ReauthRequiredError);
    await assert.rejects(tokens.forResource(TOOLS).getAccessToken(), ReauthRequiredError);
    assert.equal(idp.stats.invalidGrant, 1, "one invalid_grant, then nobody asks");
  });

  it("refuses a resource that is no absolute URI", async () => {
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    for (const bad of ["events", "", "https://events.example.test/#x", 42 as never]) {
      assert.throws(() => tokens.forResource(bad), ConfigurationError, String(bad));
    }
    assert.equal(tokens.forResource(new URL(EVENTS)).resource, new URL(EVENTS).href);
  });
});

describe("the stored login's resources", () => {
  const base: StoredTokens = { version: 1, issuer: "https://login.example.test", clientId: "cli", accessToken: "a", refreshToken: "r" };

  it("an old stored login without resources still loads", () => {
    assert.deepEqual(parseStoredTokens(JSON.stringify(base), "here"), base);
  });

  it("round-trips, and a malformed entry is refused as corrupt without quoting it", () => {
    const withResources = { ...base, resources: { [EVENTS]: { accessToken: "e", issuedAt: 1, expiresAt: 2 } } };
    assert.deepEqual(parseStoredTokens(serializeStoredTokens(withResources), "here"), withResources);
    const secret = "secret token with spaces";
    const bad = JSON.stringify({ ...base, resources: { [EVENTS]: { accessToken: secret, issuedAt: 1, expiresAt: 2 } } });
    assert.throws(
      () => parseStoredTokens(bad, "here"),
      (e: Error) => /resources/.test(e.message) && !e.message.includes(secret),
    );
    assert.throws(() => parseStoredTokens(JSON.stringify({ ...base, resources: [] }), "here"), /resources/);
    const many = Object.fromEntries(
      Array.from({ length: 17 }, (_, i) => [`https://r${i}.test`, { accessToken: "x", issuedAt: 1, expiresAt: 2 }]),
    );
    assert.throws(() => parseStoredTokens(JSON.stringify({ ...base, resources: many }), "here"), /more than 16/);
  });

  it("a store holding 16 resources makes way for a 17th: the one that expires first goes", async () => {
    const clock = createManualClock();
    let saved: StoredTokens | undefined;
    const now = clock.now();
    const resources = Object.fromEntries(
      Array.from({ length: 16 }, (_, i) => [`https://r${i}.test`, { accessToken: `t${i}`, issuedAt: now, expiresAt: now + 3_600_000 + i }]),
    );
    const store: TokenStore = {
      load: async () => saved,
      save: async (tokens) => {
        saved = JSON.parse(serializeStoredTokens(tokens)) as StoredTokens;
      },
      clear: async () => {
        saved = undefined;
      },
    };
    await using idp = await startIdp({ accessTokenTtl: 60, resources: [EVENTS] });
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store, clock });
    await tokens.setTokens(await idp.login());
    saved = { ...saved!, resources };
    using again = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store, clock });
    await again.forResource(EVENTS).getAccessToken();
    const kept = Object.keys(saved!.resources ?? {});
    assert.equal(kept.length, 16);
    assert.ok(kept.includes(EVENTS));
    assert.ok(!kept.includes("https://r0.test"), "the earliest expiry made way");
  });
});

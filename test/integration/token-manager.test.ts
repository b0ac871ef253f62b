/**
 * The token manager against a real oidc-provider (rotating refresh tokens, JWT
 * access tokens). Long lifetimes are driven with a manual clock; the IdP is real.
 */
import assert from "node:assert/strict";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { describe, it } from "node:test";
import {
  ConfigurationError,
  createTokenManager,
  memoryStore,
  ReauthRequiredError,
  TokenRefreshError,
  TokenStoreError,
  type CustomFetch,
  type TokenEvent,
} from "../../src/index.js";
import { startIdp } from "../support/idp.js";
import { managerSuite } from "../support/manager-suite.js";
import { createManualClock } from "../support/manual-clock.js";

const HOUR = 3600_000;

describe("token manager (real oidc-provider)", () => {
  // A 1 h access token: the manual clock moves through its lifetime. At the end: nothing any
  // manager emitted or threw in this suite holds token material.
  const s = managerSuite({ accessTokenTtl: 3600 });
  const { leaks, events, cli, setup, get, rejects } = s;

  it("hands out the login's token without asking the IdP", async () => {
    const { manager, login } = await setup();
    const before = s.idp.stats.byGrantType.refresh_token;
    assert.equal(await get(manager), login.access_token);
    assert.equal(s.idp.stats.byGrantType.refresh_token, before);
  });

  it("200 concurrent calls at expiry make exactly one token-endpoint request", async () => {
    const { manager, clock } = await setup({ store: memoryStore() });
    // Let the clock pass expiry without the background timer acting: close the first
    // manager and open a second on the same store once the token has expired.
    const store = memoryStore();
    const seed = await s.idp.login();
    leaks.remember(seed.access_token, seed.refresh_token);
    const first = createTokenManager({ ...cli(), clock, store });
    await first.setTokens(seed);
    first.close();
    manager.close();
    await clock.advance(HOUR + 1);
    const seen: TokenEvent[] = [];
    const m = createTokenManager({
      ...cli(),
      clock,
      store,
      onEvent: (e) => seen.push(e),
    });
    s.keep(m);
    const before = s.idp.stats.byGrantType.refresh_token;
    const tokens = await Promise.all(Array.from({ length: 200 }, () => get(m)));
    assert.equal(s.idp.stats.byGrantType.refresh_token - before, 1, "one refresh for 200 callers");
    assert.equal(new Set(tokens).size, 1);
    assert.notEqual(tokens[0], seed.access_token);
    // The first refresh of a login loaded from the store is reported as "startup".
    assert.deepEqual(
      seen.map((e) => e.type === "refreshed" && e.reason),
      ["startup"],
    );
  });

  it("refreshes proactively in the background: callers never wait while the token is valid", async (t) => {
    const { manager, clock, seen, login } = await setup();
    const loggedInAt = clock.now();
    s.idp.setTokenLatency(300);
    const before = s.idp.stats.byGrantType.refresh_token;
    // The test clock's reading as the refresh request reaches the IdP (in this process).
    let tokenRequestAt: number | undefined;
    const onRequest = (message: unknown) => {
      const { request } = message as { request: { method?: string; url?: string } };
      if (request.method === "POST" && request.url?.startsWith("/token")) tokenRequestAt ??= clock.now();
    };
    subscribe("http.server.request.start", onRequest);
    t.after(() => unsubscribe("http.server.request.start", onRequest));
    // 46 min into a 1 h token: inside the 15 min window.
    await clock.advance(46 * 60_000);
    // The timer started a refresh; callers get the current token at once meanwhile.
    const t0 = performance.now();
    assert.equal(await get(manager), login.access_token);
    assert.ok(performance.now() - t0 < 100, "a caller did not wait for the slow IdP");
    await waitFor(() => seen.some((e) => e.type === "refreshed"));
    const refreshed = seen.find((e) => e.type === "refreshed");
    assert.deepEqual(refreshed && { type: refreshed.type, reason: (refreshed as { reason: string }).reason }, {
      type: "refreshed",
      reason: "proactive",
    });
    assert.equal(s.idp.stats.byGrantType.refresh_token - before, 1);
    const next = await get(manager);
    assert.notEqual(next, login.access_token);
    // The timer started the refresh when 15 min (+1 s margin) remained; discovery comes first
    // (outside the store's lock), then the token request: expiry counts from that request.
    const timerAt = loggedInAt + HOUR - 1000 - 15 * 60_000;
    assert.ok(tokenRequestAt !== undefined && tokenRequestAt >= timerAt, "the request left after the timer fired");
    assert.equal((refreshed as { expiresAt: number }).expiresAt, tokenRequestAt + HOUR);
  });

  it("keeps refreshing across many lifetimes driven by the clock, one request per lifetime", async () => {
    const { manager, clock, seen } = await setup();
    const before = s.idp.stats.byGrantType.refresh_token;
    const tokens = new Set<string>();
    for (let minute = 0; minute < 5 * 60; minute += 1) {
      await clock.advance(60_000);
      tokens.add(await get(manager));
      if (minute % 30 === 0) await waitFor(() => true);
    }
    await waitFor(() => s.idp.stats.byGrantType.refresh_token - before >= 6);
    const refreshes = s.idp.stats.byGrantType.refresh_token - before;
    // 5 h of 1 h tokens refreshed at 45 min: 6 or 7 refreshes, all proactive.
    assert.ok(refreshes >= 6 && refreshes <= 7, `refreshes: ${refreshes}`);
    assert.ok(seen.filter((e) => e.type === "refreshed").every((e) => e.type === "refreshed" && e.reason === "proactive"));
    assert.ok(tokens.size >= 6);
  });

  it("a rejected current token forces one refresh; a rejected old token returns the current one", async () => {
    const { manager, login, seen } = await setup();
    const before = s.idp.stats.byGrantType.refresh_token;
    const fresh = await get(manager, { rejected: login.access_token });
    assert.notEqual(fresh, login.access_token);
    assert.equal(s.idp.stats.byGrantType.refresh_token - before, 1);
    assert.ok(seen.some((e) => e.type === "refreshed" && e.reason === "rejected"));
    // Stale report: no new request.
    assert.equal(await get(manager, { rejected: login.access_token }), fresh);
    assert.equal(s.idp.stats.byGrantType.refresh_token - before, 1);
  });

  it("100 concurrent rejections of the same token make exactly one refresh", async () => {
    const { manager, login } = await setup();
    const before = s.idp.stats.byGrantType.refresh_token;
    s.idp.setTokenLatency(50);
    const tokens = await Promise.all(Array.from({ length: 100 }, () => get(manager, { rejected: login.access_token })));
    assert.equal(s.idp.stats.byGrantType.refresh_token - before, 1);
    assert.equal(new Set(tokens).size, 1);
  });

  it("a dead refresh token: one reauth-required, then every call fails fast without asking the IdP", async () => {
    const { manager, clock, seen } = await setup();
    await s.idp.revokeGrant();
    s.idp.setTokenLatency(0);
    await clock.advance(HOUR + 1);
    await waitFor(() => seen.some((e) => e.type === "reauth-required"));
    const before = s.idp.stats.byGrantType.refresh_token;
    for (let i = 0; i < 50; i += 1) {
      const error = await rejects(manager.getAccessToken());
      assert.ok(error instanceof ReauthRequiredError);
      assert.equal((error as ReauthRequiredError).code, "ERR_REAUTH_REQUIRED");
      assert.match((error as Error).message, /log in again/);
      await clock.advance(30_000); // a heartbeat every 30 s for 25 min
    }
    assert.equal(s.idp.stats.byGrantType.refresh_token - before, 0, "no request after reauth-required");
    assert.equal(seen.filter((e) => e.type === "reauth-required").length, 1);
    assert.ok(seen.some((e) => e.type === "refresh-failed" && e.terminal));
    // A new login brings it back.
    const again = await s.idp.login();
    leaks.remember(again.access_token, again.refresh_token);
    await manager.setTokens(again);
    assert.equal(await get(manager), again.access_token);
  });

  it("a dead refresh token found by one manager stops the others on the same store without an IdP request", async () => {
    const store = memoryStore();
    const { manager: first, clock, seen } = await setup({ store });
    const secondSeen: TokenEvent[] = [];
    const second = createTokenManager({
      ...cli(),
      clock,
      store,
      onEvent: (e) => secondSeen.push(e),
    });
    s.keep(second);
    await get(second); // loads the shared login
    await s.idp.revokeGrant();
    const invalidBefore = s.idp.stats.invalidGrant;
    const refreshesBefore = s.idp.stats.byGrantType.refresh_token;
    await clock.advance(HOUR + 1); // both timers fire; the refreshes run one after the other
    await waitFor(() => seen.some((e) => e.type === "reauth-required") && secondSeen.some((e) => e.type === "reauth-required"));
    assert.equal(s.idp.stats.invalidGrant - invalidBefore, 1, "one invalid_grant for the two managers");
    assert.equal(s.idp.stats.byGrantType.refresh_token - refreshesBefore, 1);
    assert.ok((await rejects(second.getAccessToken())) instanceof ReauthRequiredError);
    assert.ok((await rejects(first.getAccessToken())) instanceof ReauthRequiredError);
    // A new login through one manager reaches the other through the store.
    const again = await s.idp.login();
    leaks.remember(again.access_token, again.refresh_token);
    await first.setTokens(again);
    await clock.advance(2000);
    assert.equal(await get(second), again.access_token);
    assert.equal(secondSeen.filter((e) => e.type === "reauth-required").length, 1);
  });

  it("an IdP outage: serves the valid token, backs off, fails fast after expiry, recovers", async () => {
    const { manager, clock, seen, login } = await setup({ backoff: { baseMs: 60_000, maxMs: 120_000 } });
    s.idp.setTokenOutage(503);
    const before = s.idp.stats.byGrantType.refresh_token;
    await clock.advance(46 * 60_000); // window reached: background refresh fails
    await waitFor(() => seen.some((e) => e.type === "refresh-failed"));
    assert.equal(await get(manager), login.access_token, "still valid: keep serving it");
    const failed = seen.find((e) => e.type === "refresh-failed");
    assert.ok(failed?.type === "refresh-failed" && !failed.terminal && failed.retryAt !== undefined);
    // Past expiry, with the IdP still down: callers fail fast, the IdP sees only the backoff schedule.
    await clock.advance(15 * 60_000);
    const requestsBefore = s.idp.stats.byGrantType.refresh_token;
    for (let i = 0; i < 100; i += 1) {
      const error = await rejects(manager.getAccessToken());
      assert.ok(error instanceof TokenRefreshError, String(error));
      assert.match((error as Error).message, /503/);
    }
    assert.ok(s.idp.stats.byGrantType.refresh_token - requestsBefore <= 1, "no request storm");
    s.idp.setTokenOutage(undefined);
    await clock.advance(130_000); // past the longest backoff: the timer retries
    await waitFor(() => seen.some((e) => e.type === "refreshed"));
    const recovered = await get(manager);
    assert.notEqual(recovered, login.access_token);
    assert.ok(
      s.idp.stats.byGrantType.refresh_token - before < 12,
      `requests during the outage: ${s.idp.stats.byGrantType.refresh_token - before}`,
    );
  });

  it("a wait for a slow refresh ends at once when the caller aborts", async () => {
    const store = memoryStore();
    const { manager, clock } = await setup({ store });
    manager.close();
    await clock.advance(HOUR + 1);
    const m = createTokenManager({
      ...cli(),
      clock,
      store,
      onEvent: (e) => events.push(e),
    });
    s.keep(m);
    s.idp.setTokenLatency(3000);
    const controller = new AbortController();
    const t0 = performance.now();
    const pending = m.getAccessToken({ signal: controller.signal });
    setTimeout(() => controller.abort(new Error("caller gave up")), 50);
    const error = await rejects(pending);
    const elapsed = performance.now() - t0;
    assert.match(String((error as Error).message), /caller gave up/);
    assert.ok(elapsed < 1000, `returned after ${elapsed} ms`);
  });

  it("keeps the old refresh token when a refresh response has none", async () => {
    // An IdP that does not rotate refresh tokens (and, here, does not repeat them either).
    const plainIdp = await startIdp({ accessTokenTtl: 3600, rotateRefreshTokens: false });
    try {
      const sent: string[] = [];
      const clock = createManualClock();
      // Injected fault, at the HTTP level through the manager's `fetch`: the real IdP's
      // refresh answer with its refresh_token removed.
      const withoutRefreshToken: CustomFetch = async (url, init) => {
        const response = await fetch(url, init);
        const body = new URLSearchParams(String(init.body));
        if (body.get("grant_type") !== "refresh_token" || response.status !== 200) return response;
        sent.push(body.get("refresh_token") ?? "");
        const { refresh_token: _dropped, ...rest } = (await response.json()) as Record<string, unknown>;
        const headers = new Headers(response.headers);
        headers.delete("content-length");
        return new Response(JSON.stringify(rest), { status: 200, headers });
      };
      const manager = createTokenManager({
        clock,
        issuer: plainIdp.issuer,
        clientId: plainIdp.clientId,
        allowInsecureRequests: true,
        onEvent: (e) => events.push(e),
        fetch: withoutRefreshToken,
      });
      s.keep(manager);
      const login = await plainIdp.login();
      leaks.remember(login.access_token, login.refresh_token);
      await manager.setTokens(login);
      const a = await get(manager, { rejected: login.access_token });
      await clock.advance(HOUR); // expired: refreshed again, with the refresh token it kept
      const b = await get(manager);
      assert.notEqual(a, b);
      assert.deepEqual(sent, [login.refresh_token, login.refresh_token]);
    } finally {
      await plainIdp.close();
    }
  });

  it("a store that cannot save: the refreshed token is still used, and the failure reported", async () => {
    const inner = memoryStore();
    // Injected fault: a store whose writes fail after the login was saved.
    let broken = false;
    const store = {
      load: () => inner.load(),
      clear: () => inner.clear(),
      async save(t: Parameters<typeof inner.save>[0]) {
        if (broken) throw new TokenStoreError("io", "the token store cannot be written (disk full)");
        return inner.save(t);
      },
    };
    const { manager, login, seen } = await setup({ store });
    broken = true;
    const fresh = await get(manager, { rejected: login.access_token });
    assert.notEqual(fresh, login.access_token);
    assert.equal(await get(manager), fresh, "the new token is kept in memory");
    const failed = seen.find((e) => e.type === "refresh-failed");
    assert.ok(failed?.type === "refresh-failed" && !failed.terminal && failed.error instanceof TokenStoreError);
  });

  it("client_credentials: fetches a token for a service, single-flighted", async () => {
    const manager = createTokenManager({
      issuer: s.idp.issuer,
      clientId: s.idp.serviceClient.clientId,
      clientSecret: s.idp.serviceClient.clientSecret,
      grant: "client_credentials",
      resource: s.idp.audience,
      allowInsecureRequests: true,
      onEvent: (e) => events.push(e),
    });
    s.keep(manager);
    const before = s.idp.stats.byGrantType.client_credentials;
    const tokens = await Promise.all(Array.from({ length: 20 }, () => get(manager)));
    assert.equal(new Set(tokens).size, 1);
    assert.equal(s.idp.stats.byGrantType.client_credentials - before, 1);
  });

  it("loads the login from the store at startup and ignores another client's tokens", async () => {
    const store = memoryStore();
    const clock = createManualClock();
    const login = await s.idp.login();
    leaks.remember(login.access_token, login.refresh_token);
    const seen: TokenEvent[] = [];
    const first = createTokenManager({ ...cli(), store, clock });
    await first.setTokens(login);
    first.close();
    await clock.advance(2 * HOUR);
    const second = createTokenManager({
      ...cli(),
      store,
      clock,
      onEvent: (e) => seen.push(e),
    });
    s.keep(second);
    const token = await get(second);
    assert.notEqual(token, login.access_token);
    assert.ok(seen.some((e) => e.type === "refreshed" && e.reason === "startup"));
    const other = createTokenManager({ issuer: s.idp.issuer, clientId: "another-client", allowInsecureRequests: true, store, clock });
    s.keep(other);
    assert.ok((await rejects(other.getAccessToken())) instanceof ReauthRequiredError);
  });

  it("signOut forgets the login and clears the store; close stops the timers", async () => {
    const store = memoryStore();
    const { manager, clock } = await setup({ store });
    assert.ok(clock.pendingTimers > 0);
    await manager.signOut();
    assert.equal(await store.load(), undefined);
    assert.ok((await rejects(manager.getAccessToken())) instanceof ReauthRequiredError);
    const { manager: m2, clock: c2 } = await setup();
    m2.close();
    assert.equal(c2.pendingTimers, 0);
  });

  it("bad options give a typed error", () => {
    assert.throws(() => createTokenManager({ issuer: "not a url", clientId: "x" }), ConfigurationError);
    assert.throws(() => createTokenManager({ issuer: "http://127.0.0.1:1", clientId: "x" }), /allowInsecureRequests/);
    assert.throws(() => createTokenManager({ issuer: s.idp.issuer, clientId: "" }), ConfigurationError);
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    await new Promise((r) => setTimeout(r, 10));
    if (condition()) return;
    if (Date.now() > end) throw new Error("condition not met in time");
  }
}

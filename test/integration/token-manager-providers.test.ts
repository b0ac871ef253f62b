/**
 * The token manager against identity providers that bend RFC 6749 §5.2: the real
 * oidc-provider, made to answer its token endpoint the way other providers do (no body,
 * an HTML page, a bare WWW-Authenticate challenge, Retry-After). Classified by what the
 * answer means: a refusal without a standard error is still a refusal.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ConfigurationError,
  ProviderConfigurationError,
  ReauthRequiredError,
  TokenRefreshError,
  type TokenEvent,
  type TokenManager,
} from "../../src/index.js";
import { createTokenManager, memoryStore, type TokenManagerOptions } from "../../src/index.js";
import { startIdp } from "../support/idp.js";
import { managerSuite } from "../support/manager-suite.js";
import { createManualClock, type ManualClock } from "../support/manual-clock.js";

describe("token manager: providers that bend the rules (real oidc-provider behind the bend)", () => {
  const s = managerSuite();
  const { leaks, events, setup, rejects } = s;
  const tokenRequests = () => s.idp.stats.tokenRequests;

  describe("a refusal without a standard OAuth error is terminal: one request, one reauth-required (a 401: misconfigured), then fail fast", () => {
    // A 401 refuses the client (its credentials), not the login: fix the configuration.
    const refusals: [string, number, { body?: string | object; headers?: Record<string, string> }, "reauth" | "configuration"][] = [
      ["400 with an empty body (a reused or revoked refresh token)", 400, { body: "" }, "reauth"],
      ["403 with an empty body (a wrong client secret)", 403, { body: "" }, "reauth"],
      [
        "403 with an HTML error page",
        403,
        { body: "<html><body>Forbidden</body></html>", headers: { "content-type": "text/html" } },
        "reauth",
      ],
      ["401 with a bare Basic challenge", 401, { body: "", headers: { "www-authenticate": 'Basic realm="sso"' } }, "configuration"],
      [
        "401 with a Bearer challenge naming another error",
        401,
        { body: "", headers: { "www-authenticate": 'Bearer error="invalid_token"' } },
        "configuration",
      ],
      ["400 with a JSON body that is no OAuth error", 400, { body: { message: "bad token" } }, "reauth"],
    ];
    for (const [name, status, answer, kind] of refusals) {
      it(name, async () => {
        const { manager, clock, seen, login } = await setup();
        s.idp.setTokenOutage(status, answer);
        const before = tokenRequests();
        const error = await rejects(manager.getAccessToken({ rejected: login.access_token }));
        const expected = kind === "reauth" ? ReauthRequiredError : ProviderConfigurationError;
        assert.ok(error instanceof expected, String(error));
        if (kind === "reauth") {
          assert.match((error as Error).message, new RegExp(`${status}`));
          if (!answer.headers?.["www-authenticate"]?.includes("error=")) assert.match((error as Error).message, /not a standard answer/);
        } else {
          assert.match((error as Error).message, new RegExp(`${status}.*check \`clientId\``));
        }
        for (let i = 0; i < 20; i += 1) {
          await clock.advance(30_000);
          assert.ok((await rejects(manager.getAccessToken())) instanceof expected);
        }
        assert.equal(tokenRequests() - before, 1, "one request, then none");
        assert.equal(seen.filter((e) => e.type === (kind === "reauth" ? "reauth-required" : "misconfigured")).length, 1);
      });
    }
  });

  describe("what may pass stays transient", () => {
    const transient: [string, number, { body?: string | object; headers?: Record<string, string> }][] = [
      ["500 with an HTML page", 500, { body: "<html>oops</html>", headers: { "content-type": "text/html" } }],
      ["502 with an empty body", 502, { body: "" }],
      ["408 with an empty body", 408, { body: "" }],
      ["429 with an empty body", 429, { body: "" }],
    ];
    for (const [name, status, answer] of transient) {
      it(name, async () => {
        const { manager, seen, login } = await setup();
        s.idp.setTokenOutage(status, answer);
        const error = await rejects(manager.getAccessToken({ rejected: login.access_token }));
        assert.ok(error instanceof TokenRefreshError, String(error));
        assert.ok(!seen.some((e) => e.type === "reauth-required"));
      });
    }
  });

  describe("Retry-After is honoured, capped", () => {
    const cases: [string, number, (wall: number) => string, number][] = [
      ["429 Retry-After: 7 (seconds)", 429, () => "7", 7000],
      ["503 Retry-After as an HTTP date 20 s ahead", 503, (wall) => new Date(wall + 20_000).toUTCString(), 20_000],
      ["503 Retry-After: 86400 is capped at 5 min", 503, () => "86400", 5 * 60_000],
    ];
    for (const [name, status, header, expectedMs] of cases) {
      it(name, async () => {
        const { manager, clock, seen, login } = await setup();
        s.idp.setTokenOutage(status, { body: "", headers: { "retry-after": header(Date.now()) } });
        const before = tokenRequests();
        await rejects(manager.getAccessToken({ rejected: login.access_token }));
        const failed = seen.find((e) => e.type === "refresh-failed");
        assert.ok(failed?.type === "refresh-failed" && failed.retryAt !== undefined);
        const wait = failed.retryAt - clock.now();
        // HTTP dates have whole seconds: allow one.
        assert.ok(wait >= expectedMs - 1000 && wait <= expectedMs + 1000, `next attempt in ${wait} ms`);
        // Callers do not try again before it, however much they need a token.
        await step(clock, expectedMs - 1500, async () => {
          assert.ok((await rejects(manager.getAccessToken())) instanceof TokenRefreshError);
        });
        assert.equal(tokenRequests() - before, 1, "no request before Retry-After");
        s.idp.setTokenOutage(undefined);
        await clock.advance(2500);
        await new Promise((r) => setTimeout(r, 50));
        const fresh = await manager.getAccessToken();
        leaks.remember(fresh);
        assert.notEqual(fresh, login.access_token);
      });
    }
  });

  it('expires_in as a string ("3600") is read as seconds', async () => {
    const { manager, seen, login } = await setup();
    s.idp.rewriteTokenResponse((body) => ({ ...body, expires_in: String(body.expires_in) }));
    const fresh = await manager.getAccessToken({ rejected: login.access_token });
    leaks.remember(fresh);
    const refreshed = seen.find((e) => e.type === "refreshed");
    assert.ok(refreshed?.type === "refreshed");
    const lifetime = refreshed.expiresAt - Date.now();
    assert.ok(lifetime > 3500_000 && lifetime <= 3600_000 + 60_000, `lifetime ${lifetime} ms`);
  });

  describe("client authentication at the token endpoint", () => {
    const service = (extra: Partial<TokenManagerOptions>) => {
      const manager = createTokenManager({
        issuer: s.idp.issuer,
        clientId: "unset",
        grant: "client_credentials",
        resource: s.idp.audience,
        allowInsecureRequests: true,
        onEvent: (e) => events.push(e),
        ...extra,
      });
      s.keep(manager);
      return manager;
    };
    const token = async (m: TokenManager) => {
      const t = await m.getAccessToken();
      leaks.remember(t);
      return t;
    };

    it("client_secret_post on request: a secret with -_.~ works where the client is registered for post", async () => {
      const m = service({
        clientId: s.idp.postClient.clientId,
        clientSecret: s.idp.postClient.clientSecret,
        clientAuthentication: "client_secret_post",
      });
      assert.ok((await token(m)).length > 0);
    });

    it("the default follows the provider's list: a provider without client_secret_basic gets client_secret_post", async () => {
      const postOnly = await startIdp({ clientAuthMethods: ["client_secret_post", "private_key_jwt", "none"] });
      try {
        const m = createTokenManager({
          issuer: postOnly.issuer,
          clientId: postOnly.postClient.clientId,
          clientSecret: postOnly.postClient.clientSecret,
          grant: "client_credentials",
          resource: postOnly.audience,
          allowInsecureRequests: true,
        });
        s.keep(m);
        assert.ok((await token(m)).length > 0);
      } finally {
        await postOnly.close();
      }
    });

    it("private_key_jwt with the user's key (and its kid)", async () => {
      const { clientId, privateKey, kid } = s.idp.jwtClient;
      const m = service({ clientId, clientPrivateKey: { key: privateKey, kid } });
      assert.ok((await token(m)).length > 0);
      const bare = service({ clientId, clientPrivateKey: privateKey, clientAuthentication: "private_key_jwt" });
      assert.ok((await token(bare)).length > 0, "a bare CryptoKey works too");
    });

    it("a method without what it needs is a ConfigurationError at once", () => {
      const base = { issuer: s.idp.issuer, clientId: "c", allowInsecureRequests: true } as const;
      assert.throws(() => createTokenManager({ ...base, clientAuthentication: "client_secret_post" }), ConfigurationError);
      assert.throws(() => createTokenManager({ ...base, clientAuthentication: "private_key_jwt" }), ConfigurationError);
      assert.throws(() => createTokenManager({ ...base, clientAuthentication: "bogus" as never }), ConfigurationError);
      assert.throws(() => createTokenManager({ ...base, clientPrivateKey: "-----BEGIN PRIVATE KEY-----" as never }), ConfigurationError);
      assert.throws(() => createTokenManager({ ...base, grant: "client_credentials" }), ConfigurationError);
    });
  });

  describe("knowing before the login dies", () => {
    const HOUR = 3600_000;
    /** Advance in refresh-sized steps, letting each background refresh finish. */
    const live = async (clock: ManualClock, ms: number, manager: TokenManager) => {
      for (let t = 0; t < ms; t += 5 * 60_000) {
        await clock.advance(Math.min(5 * 60_000, ms - t));
        await new Promise((r) => setTimeout(r, 20));
        // A refresh the step made due runs against the real IdP: wait for it (bounded), not for a guess.
        for (let waited = 0; (await manager.status()).state === "refreshing"; waited += 10) {
          assert.ok(waited < 10_000, "a background refresh did not end within 10 s");
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    };

    it("Keycloak: refresh_expires_in counting down to a session maximum → one login-expiring a day before", async () => {
      const clock = createManualClock();
      const seen: TokenEvent[] = [];
      const store = memoryStore();
      const manager = createTokenManager({
        issuer: s.idp.issuer,
        clientId: s.idp.clientId,
        allowInsecureRequests: true,
        clock,
        store,
        onEvent: (e) => {
          seen.push(e);
          events.push(e);
        },
      });
      s.keep(manager);
      const end = clock.now() + 25 * HOUR; // the session maximum
      const login = await s.idp.login();
      leaks.remember(login.access_token, login.refresh_token);
      await manager.setTokens({ ...login, refresh_expires_in: 25 * 3600 });
      assert.equal((await store.load())?.refreshExpiresAt, end, "kept with the login in the store");
      s.idp.rewriteTokenResponse((body) => ({ ...body, refresh_expires_in: Math.round((end - clock.now()) / 1000) }));
      await live(clock, 50 * 60_000, manager);
      assert.ok(!seen.some((e) => e.type === "login-expiring"), "not yet: more than 24 h left");
      await live(clock, 20 * 60_000, manager);
      const expiring = seen.filter((e) => e.type === "login-expiring");
      assert.equal(expiring.length, 1);
      // The provider states the time left when it answers; the test clock may have moved one step meanwhile.
      const off = Math.abs((expiring[0] as { expiresAt: number }).expiresAt - end);
      assert.ok(off <= 5 * 60_000 + 2000, `announced end off by ${off} ms`);
      await live(clock, 3 * HOUR, manager);
      assert.equal(seen.filter((e) => e.type === "login-expiring").length, 1, "once");
      assert.ok(seen.filter((e) => e.type === "refreshed").length >= 3, "the login goes on meanwhile");
    });

    it("refresh_token_expires_in (GitHub, Azure) with loginExpiringMs: 2 h", async () => {
      const clock = createManualClock();
      const seen: TokenEvent[] = [];
      const manager = createTokenManager({
        issuer: s.idp.issuer,
        clientId: s.idp.clientId,
        allowInsecureRequests: true,
        clock,
        loginExpiringMs: 2 * HOUR,
        onEvent: (e) => {
          seen.push(e);
          events.push(e);
        },
      });
      s.keep(manager);
      const login = await s.idp.login();
      leaks.remember(login.access_token, login.refresh_token);
      s.idp.rewriteTokenResponse((body) => ({ ...body, refresh_token_expires_in: 3 * 3600 }));
      await manager.setTokens({ ...login, refresh_token_expires_in: 3 * 3600 });
      await live(clock, 30 * 60_000, manager);
      assert.ok(!seen.some((e) => e.type === "login-expiring"));
      s.idp.rewriteTokenResponse((body) => ({ ...body, refresh_token_expires_in: 90 * 60 }));
      await live(clock, 30 * 60_000, manager); // the refresh at 45 min says 1.5 h are left
      assert.equal(seen.filter((e) => e.type === "login-expiring").length, 1);
    });

    it("Google: refresh answers without a refresh_token keep the one the login has", async () => {
      const plain = await startIdp({ accessTokenTtl: 3600, rotateRefreshTokens: false });
      try {
        const clock = createManualClock();
        const seen: TokenEvent[] = [];
        const manager = createTokenManager({
          issuer: plain.issuer,
          clientId: plain.clientId,
          allowInsecureRequests: true,
          clock,
          onEvent: (e) => {
            seen.push(e);
            events.push(e);
          },
        });
        s.keep(manager);
        const login = await plain.login();
        leaks.remember(login.access_token, login.refresh_token);
        await manager.setTokens({ ...login, refresh_token_expires_in: 30 * 24 * 3600 });
        plain.rewriteTokenResponse(({ refresh_token: _none, ...body }) => body);
        await live(clock, 3 * HOUR, manager);
        assert.ok(seen.filter((e) => e.type === "refreshed").length >= 3);
        assert.equal(plain.stats.invalidGrant, 0);
        assert.ok(!seen.some((e) => e.type === "refresh-failed"));
      } finally {
        await plain.close();
      }
    });
  });
});

/** Advance `ms` in 1 s steps, running `each` after every step. */
async function step(clock: ManualClock, ms: number, each: () => Promise<void>): Promise<void> {
  for (let t = 0; t < ms; t += 1000) {
    await clock.advance(Math.min(1000, ms - t));
    await each();
  }
}

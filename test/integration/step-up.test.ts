/**
 * Step-up and scope challenges end to end (RFC 9470, RFC 6750 §3.1): real connect-node
 * servers behind connect-oidc/server that require an `acr` / `max_age` the login lacks, or a
 * scope it was never granted, on every transport. The call fails at once with the typed
 * cause — no token request at the IdP, no refusal reported, the next call sends the same
 * token; in the Bearer and the DPoP scheme. And loginWithBrowser({ acrValues, maxAge }) against the real oidc-provider: the
 * authorization URL asks for them, the login keeps the ID token's `auth_time`.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import {
  ConfigurationError,
  createAuthInterceptor,
  createTokenManager,
  InsufficientScopeError,
  StepUpRequiredError,
  type TokenManager,
  type TokenProvider,
} from "../../src/index.js";
import { loginWithBrowser } from "../../src/node.js";
import { createHeadlessBrowser, type HeadlessPage } from "../support/headless-browser.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { hashToken, startServer, type TestServer } from "../support/server.js";
import { KINDS, serverFor, transportFor } from "../support/transports.js";
import { boundLogin } from "../support/dpop-bound-login.js";
import { refusalOf } from "../support/refusal.js";

const ECHO = "connectoidc.test.v1.EchoService";

describe("step-up and scope challenges (real IdP, real servers, every transport)", () => {
  let idp: Idp;
  let h1: TestServer;
  let h2: TestServer;
  let manager: TokenManager;
  let accessToken: string;
  const leaks = createLeakScanner();
  const errors: unknown[] = [];

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 3600 });
    // Say needs an MFA login of the last 5 minutes; Countdown needs "admin", which the IdP never grants.
    const methods = { [`${ECHO}/Say`]: { acr: ["urn:example:mfa"], maxAgeSeconds: 300 }, [`${ECHO}/Countdown`]: ["admin", "api"] };
    [h1, h2] = await Promise.all([startServer({ idp, http2: false, methods }), startServer({ idp, http2: true, methods })]);
  });
  beforeEach(async () => {
    manager?.close();
    manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token as string | undefined);
    accessToken = login.access_token;
    await manager.setTokens(login);
  });
  after(async () => {
    assert.ok(leaks.count > 0);
    for (const error of errors) leaks.assertClean(error, "error");
    manager?.close();
    await Promise.all([h1?.close(), h2?.close()]);
    await idp?.close();
  });

  /** The manager, counting every `getAccessToken({ rejected })` (a refusal reported). */
  const counting = (): { provider: TokenProvider; rejected: () => number } => {
    let rejected = 0;
    const provider: TokenProvider = {
      getAccessToken: (options) => {
        if (options?.rejected !== undefined) rejected += 1;
        return manager.getAccessToken(options);
      },
      current: () => manager.current(),
    };
    return { provider, rejected: () => rejected };
  };
  const failure = refusalOf(errors);

  for (const kind of KINDS) {
    describe(kind, () => {
      it("a step-up challenge fails the call at once with StepUpRequiredError; no refresh, no report, same token next", async () => {
        const server = serverFor(kind, h1, h2);
        const { provider, rejected } = counting();
        const client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(provider)]));
        const tokenRequests = idp.stats.tokenRequests;
        const requests = server.stats.requests.length;
        for (let i = 0; i < 2; i += 1) {
          const error = await failure(client.say({ text: `step-up ${i}` }));
          assert.equal(error.code, Code.Unauthenticated);
          const cause = error.cause;
          assert.ok(cause instanceof StepUpRequiredError, String(cause));
          assert.equal(cause.code, "ERR_STEP_UP_REQUIRED");
          assert.equal(cause.acrValues, "urn:example:mfa");
          assert.equal(cause.maxAge, 300);
          assert.match(error.message, /stronger login.*loginWithBrowser/);
        }
        const sent = server.stats.requests.slice(requests);
        assert.equal(sent.length, 2, "one request per call: not re-sent");
        for (const r of sent) assert.equal(r.tokenHash, hashToken(accessToken), "the same token, call after call");
        assert.equal(idp.stats.tokenRequests, tokenRequests, "no token request at the IdP");
        assert.equal(rejected(), 0, "the token is not reported as refused");
        assert.equal(manager.current(), accessToken);
      });

      it("an insufficient_scope challenge keeps the server's code, cause InsufficientScopeError; no refresh, no report", async () => {
        const server = serverFor(kind, h1, h2);
        const { provider, rejected } = counting();
        const client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(provider)]));
        const tokenRequests = idp.stats.tokenRequests;
        const requests = server.stats.requests.length;
        const error = await failure(
          (async () => {
            for await (const _ of client.countdown({ text: "x", count: 1 }));
          })(),
        );
        assert.equal(error.code, Code.PermissionDenied);
        const cause = error.cause;
        assert.ok(cause instanceof InsufficientScopeError, String(cause));
        assert.equal(cause.code, "ERR_INSUFFICIENT_SCOPE");
        assert.equal(cause.scope, "admin api");
        assert.equal(server.stats.requests.length - requests, 1, "not re-sent");
        assert.equal(idp.stats.tokenRequests, tokenRequests, "no token request at the IdP");
        assert.equal(rejected(), 0, "the token is not reported as refused");
      });
    });
  }

  it("retry: false: the same typed cause", async () => {
    const client = createClient(EchoService, transportFor("connect-h1", h1, h2, [createAuthInterceptor(manager, { retry: false })]));
    const error = await failure(client.say({ text: "x" }));
    assert.ok(error.cause instanceof StepUpRequiredError);
  });

  it("loginWithBrowser: an acrValues that is no non-empty string, a maxAge that is no whole number ≥ 0: ConfigurationError", async () => {
    const base = { issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, openBrowser: () => {} };
    for (const bad of [{ acrValues: "" }, { acrValues: 7 as unknown as string }, { maxAge: -1 }, { maxAge: 1.5 }, { maxAge: Number.NaN }]) {
      await assert.rejects(loginWithBrowser({ ...base, ...bad }), (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.match(error.message, /loginWithBrowser: `(acrValues|maxAge)`/);
        return true;
      });
    }
  });

  it("loginWithBrowser({ acrValues, maxAge }) asks for them; the login keeps the ID token's auth_time", async () => {
    const browser = createHeadlessBrowser();
    let walk: Promise<HeadlessPage> | undefined;
    let opened: URL | undefined;
    const before = Math.floor(Date.now() / 1000);
    const result = await loginWithBrowser({
      issuer: idp.issuer,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      acrValues: "urn:example:mfa urn:example:pwd",
      maxAge: 300,
      openBrowser: (url) => {
        opened = url;
        walk = browser.open(url);
      },
    });
    await walk;
    leaks.remember(result.access_token, result.refresh_token as string | undefined, result.id_token as string | undefined);
    assert.equal(opened?.searchParams.get("acr_values"), "urn:example:mfa urn:example:pwd");
    assert.equal(opened?.searchParams.get("max_age"), "300");
    const authTime = result.identity?.authTime;
    assert.equal(typeof authTime, "number", "max_age makes the provider put auth_time in the ID token");
    assert.ok((authTime as number) >= before - 5 && (authTime as number) <= Math.floor(Date.now() / 1000) + 5, String(authTime));
    await manager.setTokens(result);
    assert.equal((await manager.status()).authTime, authTime);
  });
});

describe("step-up and scope challenges in the DPoP scheme (real IdP, real DPoP servers, every transport)", () => {
  let idp: Idp;
  let h1: TestServer;
  let h2: TestServer;
  let tokens: TokenManager;
  let accessToken: string;
  const leaks = createLeakScanner();
  const errors: unknown[] = [];

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 3600, dpop: {} });
    const methods = { [`${ECHO}/Say`]: { acr: ["urn:example:mfa"] }, [`${ECHO}/Countdown`]: ["admin"] };
    [h1, h2] = await Promise.all([
      startServer({ idp, http2: false, dpop: {}, methods }),
      startServer({ idp, http2: true, dpop: {}, methods }),
    ]);
    const { login, dpopKey } = await boundLogin(idp);
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    leaks.remember((await crypto.subtle.exportKey("jwk", dpopKey.keyPair.privateKey)).d);
    accessToken = login.access_token;
    tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, dpop: true });
    await tokens.setTokens({ ...login, dpopKey });
  });
  after(async () => {
    assert.ok(leaks.count > 0);
    for (const error of errors) leaks.assertClean(error, "error");
    tokens?.close();
    await Promise.all([h1?.close(), h2?.close()]);
    await idp?.close();
  });

  const failure = refusalOf(errors);

  for (const kind of KINDS) {
    it(`${kind}: DPoP error="insufficient_user_authentication" / "insufficient_scope": typed causes, no token request, same token`, async () => {
      const server = serverFor(kind, h1, h2);
      const client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(tokens)]));
      const tokenRequests = idp.stats.tokenRequests;
      const requests = server.stats.requests.length;
      const stepUp = await failure(client.say({ text: "x" }));
      assert.equal(stepUp.code, Code.Unauthenticated);
      assert.match(stepUp.metadata.get("www-authenticate") ?? "", /^DPoP error="insufficient_user_authentication"/);
      assert.ok(stepUp.cause instanceof StepUpRequiredError, String(stepUp.cause));
      assert.equal(stepUp.cause.acrValues, "urn:example:mfa");
      const scope = await failure(
        (async () => {
          for await (const _ of client.countdown({ text: "x", count: 1 }));
        })(),
      );
      assert.equal(scope.code, Code.PermissionDenied);
      assert.ok(scope.cause instanceof InsufficientScopeError, String(scope.cause));
      assert.equal(scope.cause.scope, "admin");
      const sent = server.stats.requests.slice(requests);
      assert.equal(sent.length, 2, "each call sent once");
      for (const r of sent) assert.equal(r.tokenHash, hashToken(accessToken));
      assert.equal(idp.stats.tokenRequests, tokenRequests, "no token request at the IdP");
      assert.equal(tokens.current(), accessToken, "the token stays in use");
    });
  }
});

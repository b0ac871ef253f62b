/**
 * An identity provider that answers DPoP token requests with bearer tokens, as a user of the
 * token manager meets it (real oidc-provider whose answers are rewritten to `token_type:
 * "Bearer"`, time driven by a manual clock): for a login, one such answer is a failed refresh
 * (its rotated refresh token kept) and the second in a row ends the login with `DPoPKeyError`
 * "bearer-refresh" — after which no more refresh requests reach the provider, instead of one
 * rotation about every backoff for ever; a DPoP-bound answer in between starts the count
 * again. For client credentials, a provider that never bound a token is a configuration
 * error at once (no more requests); one that did and then answers bearer is retried.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  ConfigurationError,
  ProviderConfigurationError,
  createTokenManager,
  DPoPKeyError,
  memoryStore,
  ReauthRequiredError,
  TokenRefreshError,
  type TokenEvent,
  type TokenManager,
} from "../../src/index.js";
import { boundLogin } from "../support/dpop-bound-login.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock, type ManualClock } from "../support/manual-clock.js";
import { bounded } from "../support/dpop-attempt-budget.js";

const asBearer = (body: Record<string, unknown>) => ({ ...body, token_type: "Bearer" });

describe("a DPoP token request answered with bearer tokens (real IdP, manual clock)", () => {
  let idp: Idp;
  let clock: ManualClock;
  let events: TokenEvent[];
  let tokens: TokenManager | undefined;
  const leaks = createLeakScanner();
  const seen: unknown[] = [];

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600, dpop: { requireNonce: true } });
  });
  beforeEach(() => {
    tokens?.close();
    idp.rewriteTokenResponse(undefined);
    clock = createManualClock();
    events = [];
  });
  after(async () => {
    tokens?.close();
    await idp.close();
    for (const e of events) leaks.assertClean(e, `event ${e.type}`);
    for (const value of seen) leaks.assertClean(value, "error");
  });

  const base = () => ({
    issuer: idp.issuer,
    allowInsecureRequests: true,
    dpop: true as const,
    clock,
    onEvent: (e: TokenEvent) => events.push(e),
  });
  /** Token requests the provider answered with tokens (its use_dpop_nonce demands left out). */
  const answered = (grant: "refresh_token" | "client_credentials") => idp.stats.byGrantType[grant] - (idp.stats.errors.use_dpop_nonce ?? 0);
  const failure = async (p: Promise<unknown>): Promise<unknown> => {
    const error = await p.then(
      () => assert.fail("expected a failure"),
      (e: unknown) => e,
    );
    seen.push(error);
    return error;
  };

  const loggedIn = async (store = memoryStore()) => {
    const { login, dpopKey } = await boundLogin(idp);
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    tokens = createTokenManager({ ...base(), clientId: idp.clientId, store });
    await tokens.setTokens({ ...login, dpopKey });
    idp.resetStats();
    return { tokens, held: login.access_token };
  };

  it("a login: the second bearer answer in a row ends it (DPoPKeyError bearer-refresh); then no more refreshes", bounded, async () => {
    const store = memoryStore();
    const { tokens, held } = await loggedIn(store);
    idp.rewriteTokenResponse(asBearer);
    const first = await failure(tokens.getAccessToken({ rejected: held }));
    assert.ok(first instanceof TokenRefreshError, String(first));
    assert.match(first.message, /bearer tokens/);
    assert.match(first.message, /the new refresh token was kept/);
    // The backoff's retry (the schedule's, on the manual clock): the second bearer answer.
    await clock.advance(60_000);
    const ended = await failure(tokens.getAccessToken());
    assert.ok(ended instanceof DPoPKeyError, String(ended));
    assert.equal(ended.reason, "bearer-refresh");
    assert.match(ended.message, /bearer tokens.*2 times in a row/);
    assert.match(ended.message, /log in again/);
    assert.equal(answered("refresh_token"), 2);
    // Ten minutes of callers and timers later: still ended, and not one more refresh.
    for (let minute = 0; minute < 10; minute += 1) {
      await clock.advance(60_000);
      const again = await failure(tokens.getAccessToken());
      assert.ok(again instanceof DPoPKeyError, `minute ${minute}: ${String(again)}`);
    }
    assert.equal(answered("refresh_token"), 2, "no refresh after the login ended");
    // Another manager sharing the store (another process's view): the consumed refresh token
    // is gone from it, so it needs a new login too, without presenting that token to the IdP.
    const other = createTokenManager({ ...base(), clientId: idp.clientId, store });
    try {
      const otherError = await failure(other.getAccessToken({ rejected: held }));
      assert.ok(otherError instanceof ReauthRequiredError, String(otherError));
      assert.equal(idp.stats.invalidGrant, 0, "the consumed refresh token was never presented");
      assert.equal(answered("refresh_token"), 2);
    } finally {
      other.close();
    }
    const terminal = events.filter((e) => e.type === "refresh-failed" && e.terminal);
    assert.equal(terminal.length, 1);
    assert.ok(events.some((e) => e.type === "reauth-required" && e.error instanceof DPoPKeyError));
  });

  it("a login: a DPoP-bound answer between two bearer answers starts the count again", bounded, async () => {
    const { tokens, held } = await loggedIn();
    idp.rewriteTokenResponse(asBearer);
    assert.ok((await failure(tokens.getAccessToken({ rejected: held }))) instanceof TokenRefreshError);
    idp.rewriteTokenResponse(undefined);
    await clock.advance(60_000);
    const bound = await tokens.getAccessToken();
    leaks.remember(bound);
    assert.notEqual(bound, held, "refreshed with DPoP-bound tokens");
    tokens.accepted(bound); // a server took it (as the interceptor reports): its refusal is answered at once
    idp.rewriteTokenResponse(asBearer);
    const again = await failure(tokens.getAccessToken({ rejected: bound }));
    assert.ok(again instanceof TokenRefreshError, `the first bearer answer in a row again: ${String(again)}`);
  });

  it("client credentials, a provider that never bound a token: a configuration error at once, no more requests", bounded, async () => {
    tokens = createTokenManager({
      ...base(),
      clientId: idp.serviceClient.clientId,
      clientSecret: idp.serviceClient.clientSecret,
      grant: "client_credentials",
      scope: "api",
    });
    leaks.remember(idp.serviceClient.clientSecret);
    idp.resetStats();
    idp.rewriteTokenResponse(asBearer);
    const error = await failure(tokens.getAccessToken());
    assert.ok(error instanceof ProviderConfigurationError, `a ProviderConfigurationError: ${String(error)}`);
    assert.ok(error instanceof ConfigurationError, "a ConfigurationError (fix the configuration)");
    assert.equal(error.reason, "dpop");
    assert.doesNotMatch(error.message, /log in/i, "client credentials never say to log in");
    const config = error;
    assert.match(config.message, /bearer tokens/);
    assert.match(config.message, /enable DPoP .* for this client at the provider, or create the token manager without `dpop`/);
    for (let minute = 0; minute < 5; minute += 1) {
      await clock.advance(60_000);
      await failure(tokens.getAccessToken());
    }
    assert.equal(answered("client_credentials"), 1, "asked once");
  });

  it("client credentials that worked with DPoP, then a bearer answer: a failed grant, retried", bounded, async () => {
    tokens = createTokenManager({
      ...base(),
      clientId: idp.serviceClient.clientId,
      clientSecret: idp.serviceClient.clientSecret,
      grant: "client_credentials",
      scope: "api",
    });
    const bound = await tokens.getAccessToken();
    leaks.remember(bound);
    idp.rewriteTokenResponse(asBearer);
    const error = await failure(tokens.getAccessToken({ rejected: bound }));
    assert.ok(error instanceof TokenRefreshError, String(error));
    assert.match(error.message, /bearer tokens/);
    idp.rewriteTokenResponse(undefined);
    await clock.advance(60_000);
    const next = await tokens.getAccessToken();
    leaks.remember(next);
    assert.notEqual(next, bound);
  });
});

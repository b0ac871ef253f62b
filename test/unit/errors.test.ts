/**
 * The public errors as a caller uses them: `switch (err.code)` on the class's and the
 * instance's code, `instanceof` along each family, the name of the class, `cause` and
 * `reason` kept; and the words of the messages built for them in errors.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { closedError, corruptLogin, noLogin, noRefreshToken } from "../../src/errors.js";
import {
  ConfigurationError,
  ConnectOidcError,
  DPoPKeyError,
  InsufficientScopeError,
  LoginError,
  ProviderConfigurationError,
  ReauthRequiredError,
  RevocationError,
  StepUpRequiredError,
  TokenManagerClosedError,
  TokenRefreshError,
  TokenStoreError,
} from "../../src/index.js";

describe("the public errors", () => {
  const cause = new Error("underneath");
  const cases = [
    { error: new ConnectOidcError("m", { cause }), type: ConnectOidcError, code: "ERR_CONNECT_OIDC", family: [] },
    { error: new ReauthRequiredError("m", { cause }), type: ReauthRequiredError, code: "ERR_REAUTH_REQUIRED", family: [] },
    {
      error: new DPoPKeyError("missing", "m", { cause }),
      type: DPoPKeyError,
      code: "ERR_REAUTH_REQUIRED",
      family: [ReauthRequiredError],
    },
    { error: new TokenRefreshError("m", { cause, retryAt: 5 }), type: TokenRefreshError, code: "ERR_TOKEN_REFRESH", family: [] },
    { error: new TokenStoreError("locked", "m", { cause }), type: TokenStoreError, code: "ERR_TOKEN_STORE", family: [] },
    { error: new LoginError("m", { cause }), type: LoginError, code: "ERR_LOGIN", family: [] },
    { error: new ConfigurationError("m", { cause }), type: ConfigurationError, code: "ERR_CONFIGURATION", family: [] },
    {
      error: new ProviderConfigurationError("client", "m", { cause }),
      type: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      family: [ConfigurationError],
    },
    { error: new TokenManagerClosedError("m", { cause }), type: TokenManagerClosedError, code: "ERR_MANAGER_CLOSED", family: [] },
    { error: new RevocationError("failed", "m", { cause }), type: RevocationError, code: "ERR_REVOCATION", family: [] },
    { error: new StepUpRequiredError("m", { cause }), type: StepUpRequiredError, code: "ERR_STEP_UP_REQUIRED", family: [] },
    { error: new InsufficientScopeError("m", { cause }), type: InsufficientScopeError, code: "ERR_INSUFFICIENT_SCOPE", family: [] },
  ];

  for (const { error, type, code, family } of cases) {
    it(`${type.name}: code ${code} on the class and the instance, its name, its family, its cause`, () => {
      assert.equal(error.code, code);
      assert.equal((type as { code?: string }).code, code);
      assert.equal(error.name, type.name);
      assert.equal(error.message, "m");
      assert.equal(error.cause, cause);
      for (const base of [ConnectOidcError, Error, ...family]) assert.ok(error instanceof base, `${type.name} is a ${base.name}`);
    });
  }

  it("keeps reason and retryAt", () => {
    assert.equal(new DPoPKeyError("bearer-refresh", "m").reason, "bearer-refresh");
    assert.equal(new TokenStoreError("fenced", "m").reason, "fenced");
    assert.equal(new ProviderConfigurationError("scope", "m").reason, "scope");
    assert.equal(new TokenRefreshError("m", { retryAt: 1234 }).retryAt, 1234);
    assert.equal(new TokenRefreshError("m").retryAt, undefined);
    const stepUp = new StepUpRequiredError("m", { acrValues: "urn:mfa", maxAge: 300 });
    assert.deepEqual([stepUp.acrValues, stepUp.maxAge], ["urn:mfa", 300]);
    assert.deepEqual([new StepUpRequiredError("m").acrValues, new StepUpRequiredError("m").maxAge], [undefined, undefined]);
    assert.equal(new InsufficientScopeError("m", { scope: "admin" }).scope, "admin");
    assert.equal(new InsufficientScopeError("m").scope, undefined);
  });

  it("says what to do in the messages built beside the classes", () => {
    const settings = { clientId: "my-cli", issuer: "https://login.example.com" };
    const none = noLogin(settings);
    assert.ok(none instanceof ReauthRequiredError);
    assert.equal(
      none.message,
      'No login found for client "my-cli" at https://login.example.com: log in (loginWithBrowser or loginWithDeviceCode) and pass the result to setTokens()',
    );
    const dead = noRefreshToken(settings);
    assert.ok(dead instanceof ReauthRequiredError);
    assert.equal(
      dead.message,
      'The login of client "my-cli" at https://login.example.com has no usable refresh token (the identity provider refused it, or never issued one): log in again and pass the result to setTokens()',
    );
    const closed = closedError();
    assert.ok(closed instanceof TokenManagerClosedError);
    assert.equal(closed.message, "The token manager was closed (close() or dispose): create a new one");
    const corrupt = corruptLogin("The token file /tmp/t.json", "it is not JSON");
    assert.equal(corrupt.reason, "corrupt");
    assert.equal(
      corrupt.message,
      "The token file /tmp/t.json holds no usable login: it is not JSON. Delete it, or log in again to overwrite it.",
    );
  });
});

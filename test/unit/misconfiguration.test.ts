/**
 * The words of a configuration failure (misconfiguration.ts), without an identity provider:
 * what was tried and the option to change, and nothing of an answer that is not plain.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ProviderConfigurationError } from "../../src/errors.js";
import { describeFailure, ExchangeFailure } from "../../src/failure.js";
import { discoveryFailure, discoveryUrl, tokenRequestMisconfiguration } from "../../src/misconfiguration.js";

const settings = {
  issuer: "https://login.example.com",
  clientId: "svc",
  grant: "client_credentials" as const,
  credentials: "private-key" as const,
};

describe("misconfiguration: the words of a configuration failure", () => {
  it("discovery looks where openid-client looks", () => {
    assert.equal(discoveryUrl("https://id.example/realms/a/"), "https://id.example/realms/a/.well-known/openid-configuration");
    assert.equal(
      discoveryUrl("https://id.example/.well-known/openid-configuration"),
      "https://id.example/.well-known/openid-configuration",
    );
  });

  it("an issuer the provider names is printed only when it is a plain URL", () => {
    const mismatch = (issuer: unknown) =>
      discoveryFailure(
        { code: "OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED", cause: { attribute: "issuer", body: { issuer } } },
        "https://login.example.com",
      );
    const plain = mismatch("https://login.example.com/tenant");
    assert.ok(plain instanceof ProviderConfigurationError && plain.reason === "issuer-mismatch");
    assert.match(
      plain.message,
      /calls itself https:\/\/login\.example\.com\/tenant, not https:\/\/login\.example\.com .*use that as `issuer`/,
    );
    for (const forged of ["https://x\nINFO forged", "javascript:alert(1)", `https://${"a".repeat(400)}`, 42]) {
      const error = mismatch(forged);
      assert.ok(error instanceof ProviderConfigurationError);
      assert.match(error.message, /names another issuer than https:\/\/login\.example\.com: set `issuer`/);
      assert.ok(!error.message.includes("forged") && !error.message.includes("javascript") && !error.message.includes("aaaa"));
    }
  });

  it("an outage is no configuration failure, but its message names the URL tried (and a TLS failure the CA)", () => {
    const refused = discoveryFailure(new TypeError("fetch failed", { cause: { code: "ECONNREFUSED" } }), settings.issuer);
    assert.ok(refused instanceof ExchangeFailure);
    assert.match(
      refused.message,
      /at https:\/\/login\.example\.com\/\.well-known\/openid-configuration \(ECONNREFUSED\); if this persists, check `issuer`$/,
    );
    const tls = discoveryFailure(new TypeError("fetch failed", { cause: { code: "SELF_SIGNED_CERT_IN_CHAIN" } }), settings.issuer);
    assert.match(
      tls.message,
      /^the identity provider's TLS certificate is not trusted \(SELF_SIGNED_CERT_IN_CHAIN\): .*`fetch` of your own.*NODE_EXTRA_CA_CERTS.* \(discovery at https:\/\/login\.example\.com\/\.well-known\/openid-configuration\)$/,
    );
    // The token endpoint's certificate (after a discovery that worked, e.g. another host).
    assert.match(
      describeFailure(new TypeError("fetch failed", { cause: { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" } })),
      /^the identity provider's TLS certificate is not trusted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): trust its CA in a `fetch` of your own/,
    );
    const down = discoveryFailure({ status: 503 }, settings.issuer);
    assert.ok(down instanceof ExchangeFailure);
  });

  it("a refused client names the credential it uses; a transient answer is none", () => {
    const refused = tokenRequestMisconfiguration(new ExchangeFailure("x", { status: 401, error: "invalid_client" }), settings);
    assert.match(
      refused?.message ?? "",
      /\(invalid_client\): check `clientId`, `clientPrivateKey` \(and its `kid`\) and `clientAuthentication`/,
    );
    const token404 = tokenRequestMisconfiguration(new ExchangeFailure("x", { status: 404 }), settings);
    assert.equal(token404?.reason, "token-endpoint");
    assert.match(token404?.message ?? "", /answered 404: check `issuer`/);
    const login = { ...settings, grant: "authorization_code" as const, credentials: "none" as const };
    const unauthorized = tokenRequestMisconfiguration(new ExchangeFailure("x", { error: "unauthorized_client" }), login);
    assert.match(
      unauthorized?.message ?? "",
      /refused the authorization code grant of client "svc" \(unauthorized_client\): check `clientId`, and/,
    );
    assert.doesNotMatch(unauthorized?.message ?? "", /`grant`|clientSecret/, "the logins have neither option");
    assert.equal(
      tokenRequestMisconfiguration(new ExchangeFailure("x", { status: 400, error: "invalid_grant" }), login),
      undefined,
      "an expired code: the login's",
    );
    assert.equal(tokenRequestMisconfiguration(new ExchangeFailure("x", { status: 503 }), settings), undefined);
    assert.equal(
      tokenRequestMisconfiguration(new ExchangeFailure("x", { status: 400, error: "temporarily_unavailable" }), settings),
      undefined,
    );
  });
});

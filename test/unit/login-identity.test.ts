/**
 * The login's identity as kept with it (login-identity.ts, stored-tokens.ts): strings only,
 * at most 256 characters, no control characters, on the way in and read back from a store;
 * and sign-out's choice to revoke (sign-out.ts) for a provider without a revocation endpoint.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RevocationError } from "../../src/index.js";
import { checkedIdentity, identityFromClaims, identityOfResponse, MAX_CLAIM_LENGTH } from "../../src/login-identity.js";
import type { RevocationResult } from "../../src/oidc.js";
import { parseStoredTokens, serializeStoredTokens } from "../../src/stored-tokens.js";
import { revocableTokens, revokeLogins } from "../../src/token/sign-out.js";
import type { StoredTokens } from "../../src/types.js";

const login: StoredTokens = { version: 1, issuer: "https://issuer.example", clientId: "c", accessToken: "at-1", refreshToken: "rt-1" };

describe("the login's identity", () => {
  it("keeps sub, name, email, preferred_username, acr, auth_time from validated claims; drops the rest", () => {
    const claims = {
      sub: "u1",
      name: "Ann",
      email: "ann@example.test",
      preferred_username: "ann",
      acr: "x",
      auth_time: 1_700_000_000,
      amr: ["pwd"],
    };
    assert.deepEqual(identityFromClaims(claims), {
      subject: "u1",
      name: "Ann",
      email: "ann@example.test",
      preferredUsername: "ann",
      acr: "x",
      authTime: 1_700_000_000,
    });
    // Read back from a store: the same checks (auth_time whole epoch seconds).
    assert.deepEqual(checkedIdentity({ subject: "u1", acr: "urn:mfa", authTime: 12 }), { subject: "u1", acr: "urn:mfa", authTime: 12 });
    assert.deepEqual(checkedIdentity({ subject: "u1", acr: "a\u001b", authTime: 1.5 }), { subject: "u1" });
    assert.deepEqual(identityFromClaims({ sub: "u1", auth_time: "12" }), { subject: "u1" });
  });

  it("leaves out what is no short, printable string; no subject, no identity", () => {
    const long = "a".repeat(MAX_CLAIM_LENGTH + 1);
    assert.deepEqual(identityFromClaims({ sub: "u1", name: long, email: 42, preferred_username: "ann\u001b[2J" }), { subject: "u1" });
    assert.deepEqual(identityFromClaims({ sub: "u1", name: "x\u009bq" }), { subject: "u1" });
    assert.equal(identityFromClaims({ name: "Ann" }), undefined);
    assert.equal(identityFromClaims({ sub: "" }), undefined);
    assert.equal(checkedIdentity("u1"), undefined);
    assert.equal(identityFromClaims({ sub: "a".repeat(MAX_CLAIM_LENGTH) })?.subject.length, MAX_CLAIM_LENGTH);
  });

  it("from a response: the logins' `identity`, else openid-client's claims(); a throwing helper gives none", () => {
    assert.deepEqual(identityOfResponse({ access_token: "a", identity: { subject: "u1", name: 7 as unknown as string } }), {
      subject: "u1",
    });
    assert.deepEqual(identityOfResponse({ access_token: "a", claims: () => ({ sub: "u2" }) }), { subject: "u2" });
    assert.equal(
      identityOfResponse({
        access_token: "a",
        claims: () => {
          throw new Error("no id token");
        },
      }),
      undefined,
    );
  });

  it("is persisted with the login, and read back bounded (a bad one is left out, the login is not corrupt)", () => {
    const text = serializeStoredTokens({ ...login, identity: { subject: "u1", email: "ann@example.test" } });
    assert.deepEqual(parseStoredTokens(text, "here").identity, { subject: "u1", email: "ann@example.test" });
    const tampered = JSON.stringify({ ...JSON.parse(text), identity: { subject: "u1", name: "\u001b]0;pwned\u0007" } });
    assert.deepEqual(parseStoredTokens(tampered, "here").identity, { subject: "u1" });
    const noSubject = JSON.stringify({ ...JSON.parse(text), identity: { name: "Ann" } });
    assert.equal(parseStoredTokens(noSubject, "here").identity, undefined);
  });
});

describe("sign-out's revocation choice", () => {
  const unsupported = {
    revoke: async (): Promise<RevocationResult> => ({ ok: false, unsupported: true, error: new Error("no revocation_endpoint") }),
  };

  it("revokes refresh tokens first, each token once", () => {
    assert.deepEqual(revocableTokens([login, { ...login, accessToken: "at-2" }, undefined]), [
      { token: "rt-1", hint: "refresh_token" },
      { token: "at-1", hint: "access_token" },
      { token: "at-2", hint: "access_token" },
    ]);
  });

  it("by default, a provider without the endpoint is no failure; with revoke: true it is reported", async () => {
    assert.deepEqual(await revokeLogins(unsupported, [login], undefined), { revoked: false });
    const asked = await revokeLogins(unsupported, [login], true);
    assert.ok(asked.error instanceof RevocationError);
    assert.equal(asked.error.reason, "unsupported");
    assert.deepEqual(await revokeLogins(unsupported, [undefined], true), { revoked: false }, "nothing to revoke");
  });
});

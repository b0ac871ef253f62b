/**
 * connect-oidc/server's RFC 7662 introspection of opaque access tokens, against the real IdP
 * (oidc-provider issuing opaque tokens, introspection on), through openid-client: an active
 * token is accepted with its claims, and its answer is cached (one introspection request for
 * many calls); a revoked grant's token is refused as inactive; the wrong audience is refused;
 * our client passes against a real server that introspects.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager } from "../../src/index.js";
import { createTokenVerifier, type TokenVerifierOptions } from "../../src/server.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { startServer } from "../support/server.js";
import { transportFor } from "../support/transports.js";

const URL_SAY = "http://127.0.0.1:9/connectoidc.test.v1.EchoService/Say";

describe("introspection of opaque access tokens (real IdP)", () => {
  let idp: Idp;
  const leaks = createLeakScanner();

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600, opaqueAccessTokens: true });
  });
  after(() => idp?.close());

  const options = (more: Partial<TokenVerifierOptions> = {}): TokenVerifierOptions => ({
    issuer: idp.issuer,
    audience: idp.audience,
    allowInsecureRequests: true,
    introspection: { clientId: idp.serviceClient.clientId, clientSecret: idp.serviceClient.clientSecret },
    ...more,
  });

  it("an active opaque token is accepted with its claims; the answer is cached (maxCacheSeconds), a fresh verifier asks again", async () => {
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token);
    assert.equal(login.access_token.split(".").length, 1, "an opaque token");
    const verifier = createTokenVerifier(options());
    const request = { authorization: `Bearer ${login.access_token}`, method: "POST", url: URL_SAY };
    const result = await verifier.verify(request);
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.format, "introspection");
    assert.equal(result.subject, idp.accountId);
    assert.ok(result.scopes.has("api"));
    // After the grant is revoked, the cached answer still stands (the documented lag); a verifier without it asks.
    await idp.revokeGrant(login.refresh_token);
    assert.ok((await verifier.verify(request)).ok, "cached: no second introspection");
    const fresh = await createTokenVerifier(options()).verify(request);
    assert.equal(fresh.ok ? "ok" : fresh.reason, "inactive");
    const short = createTokenVerifier(options({ introspection: { ...options().introspection!, maxCacheSeconds: 0 } }));
    const login2 = await idp.login();
    leaks.remember(login2.access_token, login2.refresh_token);
    const request2 = { ...request, authorization: `Bearer ${login2.access_token}` };
    assert.ok((await short.verify(request2)).ok);
    await idp.revokeGrant(login2.refresh_token);
    const again = await short.verify(request2);
    assert.equal(again.ok ? "ok" : again.reason, "inactive", "maxCacheSeconds: 0 asks every time");
  });

  it("a token of a revoked grant is refused as inactive; another audience is refused", async () => {
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token);
    const other = createTokenVerifier(options({ audience: "https://other.example" }));
    const wrong = await other.verify({ authorization: `Bearer ${login.access_token}`, method: "POST", url: URL_SAY });
    assert.equal(wrong.ok ? "ok" : wrong.reason, "wrong-audience");
    await idp.revokeGrant(login.refresh_token);
    const verifier = createTokenVerifier(options());
    const result = await verifier.verify({ authorization: `Bearer ${login.access_token}`, method: "POST", url: URL_SAY });
    assert.equal(result.ok ? "ok" : result.reason, "inactive");
    assert.equal(!result.ok && result.headers["www-authenticate"], 'Bearer error="invalid_token", error_description="inactive"');
    leaks.assertClean(result, "refusal");
  });

  it("our client passes against a real server that introspects", async () => {
    const server = await startServer({
      idp,
      http2: false,
      verifier: { introspection: { clientId: idp.serviceClient.clientId, clientSecret: idp.serviceClient.clientSecret } },
    });
    const tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    try {
      const login = await idp.login();
      leaks.remember(login.access_token, login.refresh_token);
      await tokens.setTokens(login);
      const client = createClient(EchoService, transportFor("connect-h1", server, server, [createAuthInterceptor(tokens)]));
      assert.equal((await client.say({ text: "opaque" })).subject, idp.accountId);
    } finally {
      tokens.close();
      await server.close();
    }
  });
});

/**
 * What counts as a DPoP nonce challenge, as a user's call meets it: only a `DPoP` challenge
 * with `error="use_dpop_nonce"` among the `WWW-Authenticate` challenges (one header or several,
 * quoted strings holding commas, any case of the scheme) is answered with the same token and
 * the server's nonce; a `Bearer` challenge carrying that error is a refusal of the token (a
 * refresh at the real IdP, the call re-sent with the new token). A nonce challenge whose
 * `DPoP-Nonce` cannot be used fails at once, naming the server's broken answer, without
 * burning the retry on the old nonce. A real oidc-provider (nonces required) issues and
 * refreshes the DPoP-bound login; a recording listener plays the resource server.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, type TokenManager } from "../../src/index.js";
import { parseChallenges } from "../../src/www-authenticate.js";
import { boundLogin } from "../support/dpop-bound-login.js";
import { type DpopRecorder, nonceChallenge, startDpopRecorder } from "../support/dpop-recorder.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { attemptBudget, bounded } from "../support/dpop-attempt-budget.js";

describe("WWW-Authenticate challenges (parser)", () => {
  const parsed = (header: string) =>
    parseChallenges(header)?.map((c) => [c.scheme, Object.fromEntries(c.params), ...(c.token68 !== undefined ? [c.token68] : [])]);

  it("one challenge or several, quoted strings with commas and escapes, any case", bounded, () => {
    assert.deepEqual(parsed('DPoP error="use_dpop_nonce"'), [["dpop", { error: "use_dpop_nonce" }]]);
    assert.deepEqual(parsed('dpop ERROR=use_dpop_nonce , Algs="ES256 PS256"'), [
      ["dpop", { error: "use_dpop_nonce", algs: "ES256 PS256" }],
    ]);
    assert.deepEqual(parsed('Bearer realm="a, DPoP error=use_dpop_nonce", error="invalid_token"'), [
      ["bearer", { realm: "a, DPoP error=use_dpop_nonce", error: "invalid_token" }],
    ]);
    assert.deepEqual(parsed('Bearer error="use_dpop_nonce", DPoP algs="ES256", Basic realm="x\\"y"'), [
      ["bearer", { error: "use_dpop_nonce" }],
      ["dpop", { algs: "ES256" }],
      ["basic", { realm: 'x"y' }],
    ]);
    // Two headers, as Headers.get joins them.
    assert.deepEqual(parsed('Bearer realm="api", DPoP error="use_dpop_nonce"'), [
      ["bearer", { realm: "api" }],
      ["dpop", { error: "use_dpop_nonce" }],
    ]);
    assert.deepEqual(parsed("Negotiate, Basic YWxhZGRpbjpvcGVuc2VzYW1l=, DPoP"), [
      ["negotiate", {}],
      ["basic", {}, "YWxhZGRpbjpvcGVuc2VzYW1l="],
      ["dpop", {}],
    ]);
  });

  it("a malformed list is no challenge at all", bounded, () => {
    for (const bad of ["", " , ", 'DPoP error="use_dpop_nonce', "DPoP a=b, error=", 'DPoP error="a" junk', '"DPoP"', "DPoP=x"]) {
      assert.equal(parseChallenges(bad), undefined, JSON.stringify(bad));
    }
  });
});

describe("DPoP nonce challenges on the wire (real IdP with nonces, recording server)", () => {
  let idp: Idp;
  let server: DpopRecorder;
  let tokens: TokenManager;
  const leaks = createLeakScanner();
  const budget = attemptBudget();

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600, dpop: { requireNonce: true } });
    server = await startDpopRecorder();
  });
  after(async () => {
    tokens?.close();
    await server.close();
    await idp.close();
    assert.equal(budget.overruns, 0, "calls retried more than once");
  });
  beforeEach(async () => {
    tokens?.close();
    const { login, dpopKey } = await boundLogin(idp);
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    leaks.remember((await crypto.subtle.exportKey("jwk", dpopKey.keyPair.privateKey)).d);
    tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, dpop: true });
    await tokens.setTokens({ ...login, dpopKey });
    server.reset();
    idp.resetStats();
  });

  const client = () =>
    createClient(
      EchoService,
      createConnectTransport({
        baseUrl: server.baseUrl,
        httpVersion: "1.1",
        interceptors: [createAuthInterceptor(tokens), budget.interceptor],
      }),
    );
  const proofNonce = (i: number) => decodeJwt(server.seen[i]?.dpop ?? "").nonce;
  const refreshes = () => idp.stats.byGrantType.refresh_token - (idp.stats.errors.use_dpop_nonce ?? 0);

  const nonceChallenges: Record<string, string | string[]> = {
    "DPoP with error": 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"',
    "scheme in lower case, a quoted comma before the error": 'dpop realm="a, b", error="use_dpop_nonce"',
    "two headers, the DPoP one second": ['Bearer realm="api"', 'DPoP algs="ES256", error="use_dpop_nonce"'],
  };
  for (const [name, header] of Object.entries(nonceChallenges)) {
    it(`a nonce challenge (${name}): re-sent once with the same token and the nonce, no refresh`, bounded, async () => {
      server.script(nonceChallenge(header, "fresh-nonce"));
      await client().say({ text: "x" });
      assert.equal(server.seen.length, 2);
      assert.equal(server.seen[1]?.authorization, server.seen[0]?.authorization, "the same token");
      assert.equal(proofNonce(1), "fresh-nonce");
      assert.equal(refreshes(), 0, "no refresh for a nonce");
    });
  }

  const notNonceChallenges: Record<string, string | string[]> = {
    "a Bearer challenge with the error beside a DPoP one": 'Bearer error="use_dpop_nonce", DPoP algs="ES256"',
    "the DPoP challenge only inside a quoted string": 'Bearer realm="x, DPoP error=use_dpop_nonce", error="invalid_token"',
    "DPoP says invalid_token, Bearer says use_dpop_nonce (two headers)": ['DPoP error="invalid_token"', 'Bearer error="use_dpop_nonce"'],
  };
  for (const [name, header] of Object.entries(notNonceChallenges)) {
    it(`no nonce challenge (${name}): a refusal — refreshed at the IdP, re-sent with the new token`, bounded, async () => {
      server.script(nonceChallenge(header, "fresh-nonce"));
      await client().say({ text: "x" });
      assert.equal(server.seen.length, 2);
      assert.notEqual(server.seen[1]?.authorization, server.seen[0]?.authorization, "a new token for a refusal");
      assert.match(server.seen[1]?.authorization ?? "", /^DPoP /);
      assert.equal(refreshes(), 1, "one refresh");
      leaks.remember(await tokens.getAccessToken());
    });
  }

  const brokenNonces: Record<string, string | string[] | undefined> = {
    "no DPoP-Nonce header": undefined,
    "an empty one": "",
    "one with a space": "not a nonce",
    "one with a quote": '"quoted"',
    "one of 5000 characters": "n".repeat(5000),
    "two DPoP-Nonce headers": ["nonce-a", "nonce-b"],
  };
  for (const [name, nonce] of Object.entries(brokenNonces)) {
    it(`a nonce challenge with ${name}: fails at once naming the server's answer, not re-sent with the old nonce`, bounded, async () => {
      server.script(nonceChallenge('DPoP error="use_dpop_nonce"', nonce));
      const error = await client()
        .say({ text: "x" })
        .then(
          () => assert.fail("the call passed"),
          (e: unknown) => e,
        );
      assert.ok(error instanceof ConnectError, String(error));
      assert.equal(error.code, Code.Unauthenticated, error.message);
      assert.equal(server.seen.length, 1, "not re-sent");
      assert.match(error.message, /use_dpop_nonce/);
      assert.match(error.message, /DPoP-Nonce/);
      const cause = error.cause as Error;
      assert.ok(cause instanceof Error);
      assert.ok(cause.message.includes(`the server at ${server.baseUrl} asked for a DPoP nonce`), cause.message);
      assert.ok(!error.message.includes("n".repeat(64)), "the server's junk is not quoted");
      leaks.assertClean(error, "error");
      assert.equal(refreshes(), 0, "a nonce challenge is no refusal of the token");
      assert.equal(await tokens.getAccessToken(), server.seen[0]?.authorization?.slice("DPoP ".length), "the token is kept");
    });
  }
});

/**
 * The interceptor's DPoP proofs as they leave a real transport, checked by the test servers'
 * jose verifier on a plain HTTP listener that records each request: a Connect GET call
 * (`useHttpGet`, a side-effect-free method) gets a proof saying GET for the URL without its
 * query; nonces stay with their origin; a nonce challenge is answered once with a new proof;
 * a bearer provider gets no DPoP header. The token is a DPoP login set with setTokens (no
 * identity provider needed: no refresh happens here).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { decodeJwt } from "jose";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { generateDPoPKey } from "../../src/dpop-key.js";
import { createProofSigner } from "../../src/dpop-proof.js";
import { createAuthInterceptor, createTokenManager, type TokenManager } from "../../src/index.js";
import { createDpopVerifier } from "../support/dpop-verify.js";
import { createLeakScanner } from "../support/leaks.js";
import { attemptBudget, bounded } from "../support/dpop-attempt-budget.js";
import { type DpopRecorder, nonceChallenge, type RecordedCall, startDpopRecorder } from "../support/dpop-recorder.js";

const CHALLENGE = 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"';

describe("DPoP proofs on the wire (real transports, recorded requests)", () => {
  const TOKEN = `at-${"x".repeat(40)}`;
  let a: DpopRecorder;
  let b: DpopRecorder;
  // Every call: at most one retry, else it fails at once naming the bound (never a spin).
  const budget = attemptBudget();
  let tokens: TokenManager;
  let thumbprint: string;
  const leaks = createLeakScanner();

  before(async () => {
    a = await startDpopRecorder();
    b = await startDpopRecorder();
    const dpopKey = await generateDPoPKey("ES256", true);
    thumbprint = (await createProofSigner("ES256", dpopKey.keyPair)).thumbprint;
    const privateJwk = await crypto.subtle.exportKey("jwk", dpopKey.keyPair.privateKey);
    leaks.remember(TOKEN, privateJwk.d);
    tokens = createTokenManager({ issuer: "https://id.example.com", clientId: "cli", dpop: true });
    await tokens.setTokens({ access_token: TOKEN, token_type: "DPoP", expires_in: 3600, dpopKey });
  });
  after(async () => {
    tokens.close();
    await a.close();
    await b.close();
    assert.equal(budget.overruns, 0, "calls retried more than once");
  });

  const verify = (seen: RecordedCall) =>
    createDpopVerifier().verify({ proof: seen.dpop, accessToken: TOKEN, boundJkt: thumbprint, method: seen.method, url: seen.url });

  // Say, as a side-effect-free method: the Connect transport sends it as GET with `useHttpGet`.
  const sayAsGet = { ...EchoService.method.say, idempotency: MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS };

  it("a Connect GET call: the proof says GET, for the URL without its query", bounded, async () => {
    for (const useHttpGet of [true, false]) {
      a.reset();
      const transport = createConnectTransport({
        baseUrl: a.baseUrl,
        httpVersion: "1.1",
        useHttpGet: true,
        interceptors: [createAuthInterceptor(tokens, { useHttpGet }), budget.interceptor],
      });
      await transport.unary(sayAsGet, undefined, undefined, undefined, { text: "hello" }).catch((e: unknown) => {
        leaks.assertClean(e, "error");
      });
      const [request] = a.seen;
      assert.equal(request?.method, "GET");
      assert.match(request?.url ?? "", /\?.*message=/, "the message rides in the query");
      assert.equal(request?.authorization, `DPoP ${TOKEN}`);
      const result = await verify(request!);
      if (useHttpGet) {
        assert.deepEqual(result, { ok: true, jkt: thumbprint, nonce: undefined });
        assert.equal(decodeJwt(request!.dpop!).htu, `${a.baseUrl}/connectoidc.test.v1.EchoService/Say`);
      } else {
        // Without the option the interceptor cannot know: the proof says POST and is refused.
        assert.equal(result.ok ? "ok" : result.reason, "htm-mismatch");
      }
    }
  });

  it("a nonce challenge: re-sent once with the nonce; the nonce stays with its origin; each proof is new", bounded, async () => {
    a.reset();
    b.reset();
    const interceptors = [createAuthInterceptor(tokens), budget.interceptor];
    const toA = createClient(EchoService, createConnectTransport({ baseUrl: a.baseUrl, httpVersion: "1.1", interceptors }));
    const toB = createClient(EchoService, createConnectTransport({ baseUrl: b.baseUrl, httpVersion: "1.1", interceptors }));
    a.script(nonceChallenge(CHALLENGE, "nonce-of-a"));
    await toA.say({ text: "1" });
    await toB.say({ text: "2" });
    await toA.say({ text: "3" });
    const claims = (seen: RecordedCall) => decodeJwt(seen.dpop!);
    assert.deepEqual(
      a.seen.map((s) => claims(s).nonce),
      [undefined, "nonce-of-a", "nonce-of-a"],
    );
    assert.deepEqual(
      b.seen.map((s) => claims(s).nonce),
      [undefined],
      "another origin never gets a's nonce",
    );
    const jtis = [...a.seen, ...b.seen].map((s) => claims(s).jti);
    assert.equal(new Set(jtis).size, jtis.length, "a new proof for every request");
    for (const s of b.seen) assert.equal(claims(s).htu, `${b.baseUrl}/connectoidc.test.v1.EchoService/Say`);
  });

  it("a second nonce challenge on the re-sent call is not retried again", bounded, async () => {
    a.reset();
    const client = createClient(
      EchoService,
      createConnectTransport({
        baseUrl: a.baseUrl,
        httpVersion: "1.1",
        interceptors: [
          createAuthInterceptor(tokens),
          budget.interceptor,
          // Inside the auth interceptor: every attempt meets a challenge.
          (next) => async (req) => {
            a.script(nonceChallenge(CHALLENGE, `n-${a.seen.length}`));
            return next(req);
          },
        ],
      }),
    );
    const error = await client.say({ text: "x" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof ConnectError, String(error));
    assert.equal(error.code, Code.Unauthenticated, error.message);
    assert.equal(a.seen.length, 2, "one retry, never two");
    assert.equal(await tokens.getAccessToken(), TOKEN, "a nonce challenge is no refusal of the token");
    leaks.assertClean(error, "error");
  });

  it("a bearer provider: authorization Bearer, no DPoP header", bounded, async () => {
    a.reset();
    const bearer = { getAccessToken: async () => TOKEN };
    const client = createClient(
      EchoService,
      createConnectTransport({ baseUrl: a.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(bearer), budget.interceptor] }),
    );
    await client.say({ text: "x" });
    assert.equal(a.seen[0]?.authorization, `Bearer ${TOKEN}`);
    assert.equal(a.seen[0]?.dpop, undefined);
  });
});

/**
 * The interceptor's DPoP proofs as they leave a real transport, checked by the test servers'
 * jose verifier on a plain HTTP listener that records each request: a Connect GET call
 * (`useHttpGet`, a side-effect-free method) gets a proof saying GET for the URL without its
 * query; nonces stay with their origin; a nonce challenge is answered once with a new proof;
 * a bearer provider gets no DPoP header. The token is a DPoP login set with setTokens (no
 * identity provider needed: no refresh happens here).
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { decodeJwt } from "jose";
import { EchoService } from "../gen/connectoidc/test/v1/echo_pb.js";
import { generateDPoPKey } from "../src/dpop-key.js";
import { createProofSigner } from "../src/dpop-proof.js";
import { createAuthInterceptor, createTokenManager, type TokenManager } from "../src/index.js";
import { createDpopVerifier } from "./support/dpop-verify.js";
import { createLeakScanner } from "./support/leaks.js";

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly authorization: string | undefined;
  readonly dpop: string | undefined;
}

/** A listener that records requests; answers 401 use_dpop_nonce when a challenge is set, else an empty Connect message. */
async function recorder() {
  const seen: Seen[] = [];
  let challenge: string | undefined;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const origin = `http://${req.headers.host}`;
      seen.push({
        method: req.method ?? "",
        url: new URL(req.url ?? "/", origin).href,
        authorization: req.headers.authorization,
        dpop: req.headers.dpop as string | undefined,
      });
      if (challenge !== undefined) {
        const nonce = challenge;
        challenge = undefined;
        res.writeHead(401, {
          "content-type": "application/json",
          "www-authenticate": 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"',
          "dpop-nonce": nonce,
        });
        res.end(JSON.stringify({ code: "unauthenticated", message: "use_dpop_nonce" }));
        return;
      }
      // An empty SayResponse in the transport's default (binary) format.
      res.writeHead(200, { "content-type": "application/proto" });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    challengeWith(nonce: string) {
      challenge = nonce;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("DPoP proofs on the wire (real transports, recorded requests)", () => {
  const TOKEN = `at-${"x".repeat(40)}`;
  let a: Awaited<ReturnType<typeof recorder>>;
  let b: Awaited<ReturnType<typeof recorder>>;
  let tokens: TokenManager;
  let thumbprint: string;
  const leaks = createLeakScanner();

  before(async () => {
    a = await recorder();
    b = await recorder();
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
  });

  const verify = (seen: Seen) =>
    createDpopVerifier().verify({ proof: seen.dpop, accessToken: TOKEN, boundJkt: thumbprint, method: seen.method, url: seen.url });

  // Say, as a side-effect-free method: the Connect transport sends it as GET with `useHttpGet`.
  const sayAsGet = { ...EchoService.method.say, idempotency: MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS };

  it("a Connect GET call: the proof says GET, for the URL without its query", async () => {
    for (const useHttpGet of [true, false]) {
      a.seen.length = 0;
      const transport = createConnectTransport({
        baseUrl: a.baseUrl,
        httpVersion: "1.1",
        useHttpGet: true,
        interceptors: [createAuthInterceptor(tokens, { useHttpGet })],
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

  it("a nonce challenge: re-sent once with the nonce; the nonce stays with its origin; each proof is new", async () => {
    a.seen.length = 0;
    b.seen.length = 0;
    const interceptors = [createAuthInterceptor(tokens)];
    const toA = createClient(EchoService, createConnectTransport({ baseUrl: a.baseUrl, httpVersion: "1.1", interceptors }));
    const toB = createClient(EchoService, createConnectTransport({ baseUrl: b.baseUrl, httpVersion: "1.1", interceptors }));
    a.challengeWith("nonce-of-a");
    await toA.say({ text: "1" });
    await toB.say({ text: "2" });
    await toA.say({ text: "3" });
    const claims = (seen: Seen) => decodeJwt(seen.dpop!);
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

  it("a second nonce challenge on the re-sent call is not retried again", async () => {
    a.seen.length = 0;
    const client = createClient(
      EchoService,
      createConnectTransport({
        baseUrl: a.baseUrl,
        httpVersion: "1.1",
        interceptors: [
          createAuthInterceptor(tokens),
          // Inside the auth interceptor: every attempt meets a challenge.
          (next) => async (req) => {
            a.challengeWith(`n-${a.seen.length}`);
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
    assert.equal(error.code, Code.Unauthenticated);
    assert.equal(a.seen.length, 2, "one retry, never two");
    assert.equal(await tokens.getAccessToken(), TOKEN, "a nonce challenge is no refusal of the token");
    leaks.assertClean(error, "error");
  });

  it("a bearer provider: authorization Bearer, no DPoP header", async () => {
    a.seen.length = 0;
    const bearer = { getAccessToken: async () => TOKEN };
    const client = createClient(
      EchoService,
      createConnectTransport({ baseUrl: a.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(bearer)] }),
    );
    await client.say({ text: "x" });
    assert.equal(a.seen[0]?.authorization, `Bearer ${TOKEN}`);
    assert.equal(a.seen[0]?.dpop, undefined);
  });
});

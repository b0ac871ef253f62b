/**
 * The interceptor's fast path (TokenProvider.current()): a token at hand goes out without
 * waiting for getAccessToken(), without a promise between the call and `next`; a refusal
 * of it still takes the reactive path through getAccessToken({ rejected }). Real oidc-provider
 * tokens, real connect-node servers on every transport; the providers are written here.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Client, createClient, type Interceptor, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createConnectTransport } from "@connectrpc/connect-node";
import { generateDPoPKey } from "../../src/dpop-key.js";
import { createProofSigner } from "../../src/dpop-proof.js";
import { createAuthInterceptor, createTokenManager, type TokenProvider } from "../../src/index.js";
import { createDpopVerifier } from "../support/dpop-verify.js";
import { nonceChallenge, startDpopRecorder } from "../support/dpop-recorder.js";
import { type Idp, startIdp } from "../support/idp.js";
import { hashToken, startServer, type TestServer } from "../support/server.js";
import { KINDS, serverFor, transportFor } from "../support/transports.js";

/** A provider written for these tests: what current() answers is set by the test; every call is counted. */
function countingProvider(options: { current?: () => string | undefined; fromGetAccessToken: (rejected?: string) => string }) {
  const asked: { readonly rejected: string | undefined }[] = [];
  const accepted: string[] = [];
  const provider: TokenProvider = {
    async getAccessToken(request = {}) {
      asked.push({ rejected: request.rejected });
      return options.fromGetAccessToken(request.rejected);
    },
    accepted: (token) => {
      accepted.push(token);
    },
    ...(options.current === undefined ? {} : { current: options.current }),
  };
  return { provider, asked, accepted };
}

describe("interceptor fast path: TokenProvider.current() (real IdP tokens, real servers)", () => {
  let idp: Idp;
  let h1: TestServer;
  let h2: TestServer;
  let tokenA: string;
  let tokenB: string;

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 3600 });
    h1 = await startServer({ idp, http2: false });
    h2 = await startServer({ idp, http2: true });
    tokenA = (await idp.login()).access_token;
    tokenB = (await idp.login()).access_token;
  });
  after(async () => {
    await h1.close();
    await h2.close();
    await idp.close();
  });

  const sentTokens = (server: TestServer) => server.stats.requests.map((r) => r.tokenHash);

  for (const kind of KINDS) {
    describe(kind, () => {
      const clientWith = (provider: TokenProvider, outer: Interceptor[] = []): Client<typeof EchoService> =>
        createClient(EchoService, transportFor(kind, h1, h2, [...outer, createAuthInterceptor(provider)]));

      it("a token at hand: the call carries current()'s token, getAccessToken() is never asked, accepted() once", async () => {
        const server = serverFor(kind, h1, h2);
        server.resetStats();
        const { provider, asked, accepted } = countingProvider({ current: () => tokenA, fromGetAccessToken: () => tokenB });
        const client = clientWith(provider);
        assert.equal((await client.say({ text: "at hand" })).text, "at hand");
        const counts: number[] = [];
        for await (const m of client.countdown({ text: "stream", count: 2 })) counts.push(m.count);
        assert.deepEqual(counts, [2, 1]);
        assert.deepEqual(sentTokens(server), [hashToken(tokenA), hashToken(tokenA)]);
        assert.deepEqual(asked, [], "getAccessToken() was asked although current() had a token");
        assert.deepEqual(accepted, [tokenA, tokenA]);
      });

      it("current() undefined, then a token: the first call waits for getAccessToken(), the next one does not", async () => {
        const server = serverFor(kind, h1, h2);
        server.resetStats();
        let atHand: string | undefined;
        const { provider, asked } = countingProvider({ current: () => atHand, fromGetAccessToken: () => tokenA });
        const client = clientWith(provider);
        await client.say({ text: "first" });
        assert.deepEqual(asked, [{ rejected: undefined }]);
        atHand = tokenB;
        await client.say({ text: "second" });
        assert.deepEqual(asked, [{ rejected: undefined }], "getAccessToken() was asked again although current() had a token");
        assert.deepEqual(sentTokens(server), [hashToken(tokenA), hashToken(tokenB)]);
      });

      it("a token from current() the server refuses: getAccessToken({ rejected }) gives a fresh one, the call is re-sent once and succeeds", async () => {
        const server = serverFor(kind, h1, h2);
        server.resetStats();
        const refused = (await idp.login()).access_token;
        server.revoke(refused);
        let atHand = refused;
        const { provider, asked, accepted } = countingProvider({
          current: () => atHand,
          fromGetAccessToken: (rejected) => {
            if (rejected === refused) atHand = tokenB; // the provider replaced the refused token
            return atHand;
          },
        });
        const client = clientWith(provider);
        assert.equal((await client.say({ text: "refused, then fresh" })).text, "refused, then fresh");
        assert.deepEqual(asked, [{ rejected: refused }]);
        assert.deepEqual(sentTokens(server), [hashToken(refused), hashToken(tokenB)]);
        assert.deepEqual(accepted, [tokenB]);
        // The next call takes the replacement from current() at once.
        await client.say({ text: "after" });
        assert.equal(asked.length, 1);
        assert.deepEqual(sentTokens(server).at(-1), hashToken(tokenB));
      });

      it("an outer interceptor that re-sends the same request gets the token at hand then, not the one set before", async () => {
        const server = serverFor(kind, h1, h2);
        server.resetStats();
        let atHand = tokenA;
        const { provider, asked } = countingProvider({ current: () => atHand, fromGetAccessToken: () => atHand });
        const sendTwice: Interceptor = (next) => async (req) => {
          await next(req);
          atHand = tokenB;
          return next(req);
        };
        await clientWith(provider, [sendTwice]).say({ text: "twice" });
        assert.deepEqual(sentTokens(server), [hashToken(tokenA), hashToken(tokenB)]);
        assert.deepEqual(asked, []);
      });
    });
  }

  it("without current(), every call waits for getAccessToken(), as before", async () => {
    h2.resetStats();
    const { provider, asked } = countingProvider({ fromGetAccessToken: () => tokenA });
    const client = createClient(EchoService, transportFor("connect-h2", h1, h2, [createAuthInterceptor(provider)]));
    await client.say({ text: "one" });
    await client.say({ text: "two" });
    assert.deepEqual(asked, [{ rejected: undefined }, { rejected: undefined }]);
    assert.deepEqual(sentTokens(h2), [hashToken(tokenA), hashToken(tokenA)]);
  });
});

describe("interceptor with current() and DPoP (recorded requests, proofs checked with jose)", () => {
  it("the token at hand goes out as DPoP with a proof for it; a nonce challenge is answered with the same token", async () => {
    const TOKEN = `at-${"c".repeat(40)}`;
    const recorder = await startDpopRecorder();
    const dpopKey = await generateDPoPKey("ES256", true);
    const thumbprint = (await createProofSigner("ES256", dpopKey.keyPair)).thumbprint;
    const manager = createTokenManager({ issuer: "https://id.example.com", clientId: "cli", dpop: true });
    try {
      await manager.setTokens({ access_token: TOKEN, token_type: "DPoP", expires_in: 3600, dpopKey });
      const { provider, asked } = countingProvider({ current: () => TOKEN, fromGetAccessToken: () => TOKEN });
      const interceptor = createAuthInterceptor({ ...provider, dpop: manager.dpop! });
      const client = createClient(
        EchoService,
        createConnectTransport({ baseUrl: recorder.baseUrl, httpVersion: "1.1", interceptors: [interceptor] }),
      );
      recorder.script(nonceChallenge('DPoP error="use_dpop_nonce"', "nonce-1"));
      await client.say({ text: "dpop" });
      assert.equal(recorder.seen.length, 2, "the challenge was answered by exactly one re-send");
      for (const seen of recorder.seen) {
        assert.equal(seen.authorization, `DPoP ${TOKEN}`);
        const result = await createDpopVerifier().verify({
          proof: seen.dpop,
          accessToken: TOKEN,
          boundJkt: thumbprint,
          method: seen.method,
          url: seen.url,
        });
        assert.equal(result.ok, true);
      }
      assert.notEqual(recorder.seen[0]!.dpop, recorder.seen[1]!.dpop, "each attempt has its own proof");
      assert.deepEqual(asked, [], "getAccessToken() was asked although current() had the token");
    } finally {
      manager.close();
      await recorder.close();
    }
  });
});

describe("interceptor fast path: no promise between the call and next", () => {
  it("with a token at hand, next() has the request, authorization set, before the interceptor's call returns", async () => {
    const seen: (string | null)[] = [];
    const next = ((req: UnaryRequest) => {
      seen.push(req.header.get("authorization"));
      return Promise.resolve({ stream: false, header: new Headers(), trailer: new Headers() } as UnaryResponse);
    }) as Parameters<Interceptor>[0];
    const handler = createAuthInterceptor({ current: () => "at-hand", getAccessToken: async () => "awaited" })(next);
    const pending = handler(unaryRequest());
    // Synchronously here: no await, no microtask ran since the call.
    assert.deepEqual(seen, ["Bearer at-hand"]);
    await pending;
  });

  it("without a token at hand, next() is reached only after getAccessToken() resolved", async () => {
    const seen: (string | null)[] = [];
    const next = ((req: UnaryRequest) => {
      seen.push(req.header.get("authorization"));
      return Promise.resolve({ stream: false, header: new Headers(), trailer: new Headers() } as UnaryResponse);
    }) as Parameters<Interceptor>[0];
    const handler = createAuthInterceptor({ current: () => undefined, getAccessToken: async () => "awaited" })(next);
    const pending = handler(unaryRequest());
    assert.deepEqual(seen, []);
    await pending;
    assert.deepEqual(seen, ["Bearer awaited"]);
  });
});

/** A unary request as a Connect transport hands it to its interceptors. */
function unaryRequest(): UnaryRequest {
  return {
    stream: false,
    service: EchoService,
    method: EchoService.method.say,
    requestMethod: "POST",
    url: "http://127.0.0.1/connectoidc.test.v1.EchoService/Say",
    signal: new AbortController().signal,
    header: new Headers({ "content-type": "application/proto" }),
    contextValues: { get: () => undefined, set: () => undefined, delete: () => undefined } as never,
    message: { text: "sync" } as never,
  };
}

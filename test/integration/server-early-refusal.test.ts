/**
 * connect-oidc/server's withAuthentication on real connect-node servers (HTTP/1.1 and HTTP/2):
 * a request without a valid token is refused before its body is read — the handler (and
 * every interceptor) never runs, the server takes in a small part of a 1 MiB body at most —
 * with the error shape of each protocol (Connect unary: HTTP 401 and a JSON error; Connect
 * streaming: an end-stream message; gRPC and gRPC-web: trailers-only grpc-status 16), the
 * challenge included. A valid request passes through, and the interceptor takes the wrapper's
 * verdict instead of checking the token again (a DPoP proof's jti is used once).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, type TokenManager } from "../../src/index.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { type RecordedRequest, startServer, type TestServer } from "../support/server.js";
import { KINDS, serverFor, transportFor } from "../support/transports.js";
import { refusalOf } from "../support/refusal.js";

const MiB = 1024 * 1024;

const withAuthorization =
  (authorization: string | undefined): Interceptor =>
  (next) =>
  (req) => {
    if (authorization !== undefined) req.header.set("authorization", authorization);
    return next(req);
  };

/** The request's record once its body ended or the request was torn down (bounded). */
async function settled(record: RecordedRequest | undefined): Promise<RecordedRequest> {
  assert.ok(record, "the server saw the request");
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    record.done,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("the request neither ended nor was torn down within 5 s")), 5000);
    }),
  ]).finally(() => clearTimeout(timer));
  return record;
}

describe("withAuthentication (real IdP, real servers, every protocol)", () => {
  let idp: Idp;
  let h1: TestServer;
  let h2: TestServer;
  let manager: TokenManager;
  const leaks = createLeakScanner();
  const errors: unknown[] = [];

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 3600 });
    [h1, h2] = await Promise.all([startServer({ idp, http2: false, early: true }), startServer({ idp, http2: true, early: true })]);
    manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token);
    await manager.setTokens(login);
  });
  after(async () => {
    for (const error of errors) leaks.assertClean(error, "error");
    manager?.close();
    await Promise.all([h1?.close(), h2?.close()]);
    await idp?.close();
  });

  const failure = refusalOf(errors);

  for (const kind of KINDS) {
    describe(kind, () => {
      it("our client passes through the wrapper and the interceptor", async () => {
        const client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(manager)]));
        assert.equal((await client.say({ text: "hello", payload: new Uint8Array(MiB) })).subject, idp.accountId);
        const counted: number[] = [];
        for await (const res of client.countdown({ text: "x", count: 2 })) counted.push(res.count);
        assert.deepEqual(counted, [2, 1]);
      });

      it("a 1 MiB request without a token is refused before its body is read; the handler never runs", async () => {
        const server = serverFor(kind, h1, h2);
        const client = createClient(EchoService, transportFor(kind, h1, h2, []));
        const before = server.stats.requests.length;
        const error = await failure(client.say({ text: "hello", payload: new Uint8Array(MiB).fill(7) }));
        assert.equal(error.code, Code.Unauthenticated);
        assert.equal(error.metadata.get("www-authenticate"), "Bearer");
        assert.equal(error.rawMessage, "no access token");
        const record = await settled(server.stats.requests[before]);
        assert.equal(record.auth, "unchecked", "no interceptor, no handler ran");
        assert.ok(record.body.byteLength < MiB / 4, `the server took in ${record.body.byteLength} bytes of 1 MiB`);
      });

      it("a request with a bad token is refused the same way, with invalid_token; server-streaming too", async () => {
        const client = createClient(EchoService, transportFor(kind, h1, h2, [withAuthorization("Bearer not-a-jwt")]));
        const unary = await failure(client.say({ text: "hello" }));
        assert.equal(unary.code, Code.Unauthenticated);
        assert.equal(unary.metadata.get("www-authenticate"), 'Bearer error="invalid_token", error_description="opaque"');
        const stream = await failure(
          (async () => {
            for await (const _ of client.countdown({ text: "x", count: 2 }));
          })(),
        );
        assert.equal(stream.code, Code.Unauthenticated);
        assert.equal(stream.metadata.get("www-authenticate"), 'Bearer error="invalid_token", error_description="opaque"');
      });
    });
  }

  it("the Connect unary shape on the wire: HTTP 401, a JSON error body, the challenge; the connection closes instead of reading 1 MiB", async () => {
    const res = await fetch(`${h1.baseUrl}/connectoidc.test.v1.EchoService/Say`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer not-a-jwt" },
      body: JSON.stringify({ text: "x".repeat(MiB) }),
    });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(res.headers.get("www-authenticate"), 'Bearer error="invalid_token", error_description="opaque"');
    assert.equal(res.headers.get("connection"), "close");
    assert.deepEqual(await res.json(), { code: "unauthenticated", message: "access token refused: opaque" });
    // A request without a body (Connect GET) keeps its connection.
    const get = await fetch(`${h1.baseUrl}/connectoidc.test.v1.EchoService/Say?connect=v1&encoding=json&message=%7B%7D`);
    assert.equal(get.status, 401);
    assert.equal(get.headers.get("www-authenticate"), "Bearer");
    assert.notEqual(get.headers.get("connection"), "close");
    await get.body?.cancel();
  });

  it("the gRPC shape on the wire: HTTP 200, trailers-only grpc-status 16 with grpc-message and the challenge in the headers", async () => {
    const http2 = await import("node:http2");
    const session = http2.connect(h2.baseUrl);
    try {
      const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/connectoidc.test.v1.EchoService/Say",
          "content-type": "application/grpc+proto",
          te: "trailers",
        });
        stream.once("response", (h) => resolve(h));
        stream.once("error", reject);
        stream.end(Buffer.alloc(5));
      });
      assert.equal(headers[":status"], 200);
      assert.equal(headers["grpc-status"], "16");
      assert.equal(decodeURIComponent(String(headers["grpc-message"])), "no access token");
      assert.equal(headers["www-authenticate"], "Bearer");
    } finally {
      session.close();
    }
  });
});

describe("withAuthentication with DPoP (nonces required)", () => {
  let idp: Idp;
  let h1: TestServer;
  let h2: TestServer;

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600, dpop: { requireNonce: true } });
    const dpop = { requireNonce: true };
    [h1, h2] = await Promise.all([
      startServer({ idp, http2: false, dpop, early: true }),
      startServer({ idp, http2: true, dpop, early: true }),
    ]);
  });
  after(async () => {
    await Promise.all([h1?.close(), h2?.close()]);
    await idp?.close();
  });

  it("our DPoP client passes on every transport: the proof is checked once (no jti-replayed from the interceptor), the nonce challenge is answered", async () => {
    const tokens = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.serviceClient.clientId,
      clientSecret: idp.serviceClient.clientSecret,
      grant: "client_credentials",
      scope: "api",
      dpop: true,
      allowInsecureRequests: true,
    });
    try {
      for (const kind of KINDS) {
        const client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(tokens)]));
        const res = await client.say({ text: kind });
        assert.equal(res.text, kind);
        const record = serverFor(kind, h1, h2).stats.requests.at(-1);
        assert.equal(record?.auth, "accepted", `${kind}: ${JSON.stringify(record?.dpop)}`);
        assert.equal(record?.dpop?.ok, true);
      }
      const refused = [...h1.stats.requests, ...h2.stats.requests].filter((r) => r.auth !== "accepted");
      // Only the first call to each server lacks its nonce (refused by the wrapper, never reaching the interceptor).
      assert.ok(refused.length <= 2, `refused: ${refused.length}`);
      assert.ok(refused.every((r) => r.auth === "unchecked"));
    } finally {
      tokens.close();
    }
  });
});

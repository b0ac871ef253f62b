/**
 * Proves the integration-test fixtures work: the real IdP (test/support/idp.ts)
 * and the real EchoService server (test/support/server.ts).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Client, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import * as oidc from "openid-client";
import {
  ChatRequestSchema,
  CollectRequestSchema,
  CountdownRequestSchema,
  EchoService,
  SayRequestSchema,
} from "../../gen/connectoidc/test/v1/echo_pb.js";
import { type Idp, startIdp } from "../support/idp.js";
import { hashToken, type RecordedRequest, startServer, type TestServer } from "../support/server.js";

const DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code";

function bearer(token: string) {
  return { headers: { authorization: `Bearer ${token}` } };
}

async function rejection(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  assert.fail("expected a rejection");
}

async function expectOAuthError(fn: () => Promise<unknown>, error: string, status?: number) {
  const err = (await rejection(fn)) as oidc.ResponseBodyError;
  assert.ok(err instanceof oidc.ResponseBodyError, `expected ResponseBodyError, got ${String(err)}`);
  assert.equal(err.error, error);
  if (status !== undefined) assert.equal(err.status, status);
}

async function expectUnauthenticated(fn: () => Promise<unknown>) {
  const err = ConnectError.from(await rejection(fn));
  assert.equal(err.code, Code.Unauthenticated, `expected Unauthenticated, got ${err.message}`);
}

/** gRPC / gRPC-web / Connect streaming envelope of one uncompressed message. */
function envelope(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

function bin<D extends DescMessage>(schema: D, init: MessageInitShape<D>): Uint8Array {
  return toBinary(schema, create(schema, init));
}

async function* messages<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

async function collectStream<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

/** Bytes equal, whether Buffer or plain Uint8Array. */
function assertBytes(actual: Uint8Array, expected: Uint8Array) {
  assert.ok(Buffer.from(actual).equals(Buffer.from(expected)), `bytes differ (${actual.length} vs ${expected.length})`);
}

function lastRecord(server: TestServer, method: string): RecordedRequest {
  const record = server.stats.requests.findLast((r) => r.path === `/connectoidc.test.v1.EchoService/${method}`);
  assert.ok(record, `no recorded request for ${method}`);
  return record;
}

async function fullBody(record: RecordedRequest): Promise<Uint8Array> {
  await record.done;
  return record.body;
}

describe("test IdP", () => {
  let idp: Idp;
  before(async () => {
    idp = await startIdp();
  });
  after(() => idp.close());

  it("login returns a refresh token and a JWT access token for the test audience", async () => {
    const tokens = await idp.login();
    assert.equal(typeof tokens.refresh_token, "string");
    assert.equal(tokens.token_type?.toLowerCase(), "bearer");
    assert.equal(tokens.expires_in, 5);

    const discovery = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as {
      jwks_uri: string;
    };
    assert.equal(discovery.jwks_uri, idp.jwksUri);
    const { payload, protectedHeader } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(idp.jwksUri)), {
      issuer: idp.issuer,
      audience: idp.audience,
      typ: "at+jwt",
      algorithms: ["RS256"],
    });
    assert.equal(protectedHeader.alg, "RS256");
    assert.equal(payload.sub, "test-user");
    assert.equal(payload.client_id, "test-cli");
    assert.equal(payload.aud, "urn:connect-oidc:test");
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 5);
    assert.equal(typeof payload.jti, "string");
  });

  it("accepts a loopback redirect URI on any port for the native client", async () => {
    const tokens = await idp.login({ redirectUri: "http://127.0.0.1:49152/callback" });
    assert.equal(typeof tokens.refresh_token, "string");
    await assert.rejects(idp.login({ redirectUri: "http://127.0.0.1:49152/other" }), /redirect_uri/);
  });

  it("rotates refresh tokens; re-using one answers invalid_grant, revokes the grant, and is counted", async () => {
    const tokens = await idp.login();
    const config = await idp.cliConfig();
    idp.resetStats();

    const rotated = await oidc.refreshTokenGrant(config, tokens.refresh_token ?? "");
    assert.ok(rotated.refresh_token);
    assert.notEqual(rotated.refresh_token, tokens.refresh_token);
    assert.notEqual(rotated.access_token, tokens.access_token);
    assert.equal(decodeProtectedHeader(rotated.access_token).typ, "at+jwt");

    await expectOAuthError(() => oidc.refreshTokenGrant(config, tokens.refresh_token ?? ""), "invalid_grant", 400);
    // Re-use revoked the whole grant: the newest refresh token is dead too.
    await expectOAuthError(() => oidc.refreshTokenGrant(config, rotated.refresh_token ?? ""), "invalid_grant", 400);

    assert.equal(idp.stats.tokenRequests, 3);
    assert.equal(idp.stats.byGrantType.refresh_token, 3);
    assert.equal(idp.stats.invalidGrant, 2);
    assert.equal(idp.stats.errors.invalid_grant, 2);
  });

  it("rotateRefreshTokens: false keeps a refresh token re-usable", async () => {
    const fixed = await startIdp({ rotateRefreshTokens: false });
    try {
      const tokens = await fixed.login();
      const config = await fixed.cliConfig();
      const first = await oidc.refreshTokenGrant(config, tokens.refresh_token ?? "");
      const second = await oidc.refreshTokenGrant(config, tokens.refresh_token ?? "");
      assert.notEqual(second.access_token, first.access_token);
      assert.equal(fixed.stats.invalidGrant, 0);
    } finally {
      await fixed.close();
    }
  });

  it("revokeGrant kills one login's refresh token, or every one", async () => {
    const config = await idp.cliConfig();
    const a = await idp.login();
    const b = await idp.login();
    await idp.revokeGrant(a.refresh_token);
    await expectOAuthError(() => oidc.refreshTokenGrant(config, a.refresh_token ?? ""), "invalid_grant");
    const bRotated = await oidc.refreshTokenGrant(config, b.refresh_token ?? "");

    await idp.revokeGrant();
    await expectOAuthError(() => oidc.refreshTokenGrant(config, bRotated.refresh_token ?? ""), "invalid_grant");
  });

  it("setTokenLatency delays the token endpoint", async () => {
    const tokens = await idp.login();
    const config = await idp.cliConfig();
    idp.setTokenLatency(300);
    try {
      const started = performance.now();
      await oidc.refreshTokenGrant(config, tokens.refresh_token ?? "");
      assert.ok(performance.now() - started >= 290, "answer came before the latency");
    } finally {
      idp.setTokenLatency(0);
    }
  });

  it("latency 'before': a client that times out has not consumed its refresh token", async () => {
    const tokens = await idp.login();
    const config = await oidc.discovery(new URL(idp.issuer), idp.clientId, undefined, oidc.None(), {
      execute: [oidc.allowInsecureRequests],
    });
    config.timeout = 0.1;
    idp.resetStats();
    idp.setTokenLatency(1000);
    try {
      const err = (await rejection(() => oidc.refreshTokenGrant(config, tokens.refresh_token ?? ""))) as oidc.ClientError;
      assert.equal(err.code, "OAUTH_TIMEOUT");
    } finally {
      idp.setTokenLatency(0);
    }
    const again = await oidc.refreshTokenGrant(await idp.cliConfig(), tokens.refresh_token ?? "");
    assert.ok(again.refresh_token);
    assert.equal(idp.stats.invalidGrant, 0);
  });

  it("latency 'after': the refresh token rotates even though the client timed out", async () => {
    const tokens = await idp.login();
    const config = await oidc.discovery(new URL(idp.issuer), idp.clientId, undefined, oidc.None(), {
      execute: [oidc.allowInsecureRequests],
    });
    config.timeout = 0.1;
    idp.setTokenLatency(500, { phase: "after" });
    try {
      const err = (await rejection(() => oidc.refreshTokenGrant(config, tokens.refresh_token ?? ""))) as oidc.ClientError;
      assert.equal(err.code, "OAUTH_TIMEOUT");
    } finally {
      idp.setTokenLatency(0);
    }
    await expectOAuthError(() => oidc.refreshTokenGrant(config, tokens.refresh_token ?? ""), "invalid_grant");
  });

  it("setTokenOutage answers the given status with an OAuth error, then recovers", async () => {
    const tokens = await idp.login();
    const config = await idp.cliConfig();
    idp.resetStats();
    idp.setTokenOutage(503);
    try {
      // openid-client parses OAuth error bodies of 4xx answers only: a 5xx is a
      // ClientError whose cause is the Response.
      const err = (await rejection(() => oidc.refreshTokenGrant(config, tokens.refresh_token ?? ""))) as oidc.ClientError;
      assert.ok(err instanceof oidc.ClientError);
      assert.equal(err.code, "OAUTH_RESPONSE_IS_NOT_CONFORM");
      assert.equal((err.cause as Response).status, 503);
      idp.setTokenOutage(429);
      await expectOAuthError(() => oidc.refreshTokenGrant(config, tokens.refresh_token ?? ""), "slow_down", 429);
    } finally {
      idp.setTokenOutage(undefined);
    }
    // The outage did not touch the refresh token.
    const recovered = await oidc.refreshTokenGrant(config, tokens.refresh_token ?? "");
    assert.ok(recovered.access_token);
    assert.equal(idp.stats.outages, 2);
    assert.equal(idp.stats.tokenRequests, 3);
    assert.equal(idp.stats.byGrantType.refresh_token, 3);
    assert.equal(idp.stats.invalidGrant, 0);
  });

  it("issues client_credentials tokens to test-service", async () => {
    idp.resetStats();
    const config = await idp.serviceConfig();
    const tokens = await oidc.clientCredentialsGrant(config, { scope: "api" });
    assert.equal(tokens.refresh_token, undefined);
    const { payload } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(idp.jwksUri)), {
      issuer: idp.issuer,
      audience: idp.audience,
      typ: "at+jwt",
    });
    assert.equal(payload.sub, "test-service");
    assert.equal(payload.scope, "api");
    assert.equal(idp.stats.byGrantType.client_credentials, 1);

    const wrongSecret = await oidc.discovery(new URL(idp.issuer), idp.serviceClient.clientId, undefined, oidc.ClientSecretBasic("wrong"), {
      execute: [oidc.allowInsecureRequests],
    });
    // A failed client_secret_basic answers 401 with WWW-Authenticate: openid-client
    // reports a challenge error rather than a body error.
    const err = (await rejection(() => oidc.clientCredentialsGrant(wrongSecret))) as oidc.WWWAuthenticateChallengeError;
    assert.ok(err instanceof oidc.WWWAuthenticateChallengeError);
    assert.equal(err.status, 401);
    assert.equal(err.cause[0]?.parameters.error, "invalid_client");
  });

  it("completes the device flow headlessly", async () => {
    idp.resetStats();
    const config = await idp.cliConfig();
    const authorization = await oidc.initiateDeviceAuthorization(config, { scope: "openid offline_access api" });
    assert.match(authorization.verification_uri, /\/device$/);
    const poll = () => oidc.genericGrantRequest(config, DEVICE_CODE, { device_code: authorization.device_code });

    await expectOAuthError(poll, "authorization_pending", 400);
    await idp.approveDeviceCode(authorization.user_code);
    const tokens = await poll();
    assert.ok(tokens.refresh_token);
    assert.equal(decodeJwt(tokens.access_token).aud, idp.audience);
    assert.equal(decodeJwt(tokens.access_token).sub, "test-user");
    assert.equal(idp.stats.byGrantType.device_code, 2);

    // The IdP announces a 1 s polling interval, so openid-client's own polling is quick.
    const second = await oidc.initiateDeviceAuthorization(config, { scope: "openid offline_access api" });
    assert.equal(second.interval, 1);
    const started = performance.now();
    const polled = oidc.pollDeviceAuthorizationGrant(config, second);
    await idp.approveDeviceCode(second.user_code);
    assert.ok((await polled).refresh_token);
    assert.ok(performance.now() - started < 3000);

    // The device login refreshes like any other.
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token ?? "");
    assert.ok(refreshed.access_token);

    const denied = await oidc.initiateDeviceAuthorization(config, { scope: "openid offline_access api" });
    await idp.denyDeviceCode(denied.user_code);
    await expectOAuthError(() => oidc.genericGrantRequest(config, DEVICE_CODE, { device_code: denied.device_code }), "access_denied");
  });

  it("closes promptly with connections still open", async () => {
    const other = await startIdp();
    await other.login();
    const started = performance.now();
    await other.close();
    assert.ok(performance.now() - started < 1000);
    await assert.rejects(fetch(`${other.issuer}/.well-known/openid-configuration`));
  });
});

interface Variant {
  readonly name: string;
  readonly http2: boolean;
  readonly protocol: "connect" | "grpc" | "grpc-web";
  readonly transport: (baseUrl: string) => Transport;
  /** Connect over HTTP/1.1 cannot do bidi streaming: the server answers HTTP 505. */
  readonly bidi: boolean;
}

const variants: Variant[] = [
  {
    name: "Connect over HTTP/1.1",
    http2: false,
    protocol: "connect",
    transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }),
    bidi: false,
  },
  {
    name: "Connect over HTTP/2",
    http2: true,
    protocol: "connect",
    transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" }),
    bidi: true,
  },
  {
    name: "gRPC over HTTP/2",
    http2: true,
    protocol: "grpc",
    transport: (baseUrl) => createGrpcTransport({ baseUrl }),
    bidi: true,
  },
  {
    name: "gRPC-web over HTTP/2",
    http2: true,
    protocol: "grpc-web",
    transport: (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "2" }),
    bidi: true,
  },
];

describe("test server", () => {
  let idp: Idp;
  let token: string;
  before(async () => {
    idp = await startIdp({ accessTokenTtl: 300 });
    token = (await idp.login()).access_token;
  });
  after(() => idp.close());

  for (const variant of variants) {
    describe(variant.name, () => {
      let server: TestServer;
      let client: Client<typeof EchoService>;
      before(async () => {
        server = await startServer({ idp, http2: variant.http2 });
        client = createClient(EchoService, variant.transport(server.baseUrl));
      });
      after(() => server.close());

      it("accepts unary calls with a bearer token and records the raw body", async () => {
        const payload = new Uint8Array(randomBytes(256 * 1024));
        const res = await client.say({ text: "héllo", payload }, bearer(token));
        assert.equal(res.text, "héllo");
        assert.equal(res.subject, "test-user");
        assertBytes(res.payload, payload);

        const record = lastRecord(server, "Say");
        const message = bin(SayRequestSchema, { text: "héllo", payload });
        const expected = variant.protocol === "connect" ? message : envelope(message);
        assertBytes(await fullBody(record), expected);
        assert.equal(record.protocol, variant.protocol);
        assert.equal(record.httpVersion, variant.http2 ? "2.0" : "1.1");
        assert.equal(record.method, "POST");
        assert.equal(record.auth, "accepted");
        assert.equal(record.subject, "test-user");
        assert.equal(record.jti, decodeJwt(token).jti);
        assert.equal(record.tokenHash, hashToken(token));
        assert.equal(record.status, 200);
        assert.ok(!JSON.stringify(record).includes(token), "a record never holds the token");
      });

      it("accepts server-streaming calls", async () => {
        const res = await collectStream(client.countdown({ text: "t", count: 3 }, bearer(token)));
        assert.deepEqual(
          res.map((m) => [m.count, m.subject, m.text]),
          [
            [3, "test-user", "t"],
            [2, "test-user", "t"],
            [1, "test-user", "t"],
          ],
        );
        const record = lastRecord(server, "Countdown");
        assertBytes(await fullBody(record), envelope(bin(CountdownRequestSchema, { text: "t", count: 3 })));
        assert.equal(record.auth, "accepted");
      });

      it("accepts client-streaming calls", async () => {
        const parts = [new Uint8Array([0, 1, 2]), new Uint8Array(randomBytes(70_000)), new Uint8Array([255])];
        const res = await client.collect(messages(parts.map((payload, i) => ({ text: String(i), payload }))), bearer(token));
        assert.equal(res.count, 3);
        assert.equal(res.text, "012");
        assert.equal(res.subject, "test-user");
        assertBytes(res.payload, Buffer.concat(parts));
        const record = lastRecord(server, "Collect");
        const expected = Buffer.concat(parts.map((payload, i) => envelope(bin(CollectRequestSchema, { text: String(i), payload }))));
        assertBytes(await fullBody(record), expected);
      });

      it(variant.bidi ? "accepts bidi calls" : "refuses bidi calls (HTTP/1.1)", async () => {
        const chat = () =>
          collectStream(client.chat(messages([{ text: "a" }, { text: "b", payload: new Uint8Array([7]) }]), bearer(token)));
        if (!variant.bidi) {
          const err = ConnectError.from(await rejection(chat));
          assert.match(err.message, /505/);
          return;
        }
        const res = await chat();
        assert.deepEqual(
          res.map((m) => [m.count, m.text, [...m.payload], m.subject]),
          [
            [1, "a", [], "test-user"],
            [2, "b", [7], "test-user"],
          ],
        );
        const record = lastRecord(server, "Chat");
        const expected = Buffer.concat([
          envelope(bin(ChatRequestSchema, { text: "a" })),
          envelope(bin(ChatRequestSchema, { text: "b", payload: new Uint8Array([7]) })),
        ]);
        assertBytes(await fullBody(record), expected);
      });

      it("refuses every method kind without a token", async () => {
        server.resetStats();
        await expectUnauthenticated(() => client.say({ text: "x" }));
        await expectUnauthenticated(() => collectStream(client.countdown({ count: 1 })));
        await expectUnauthenticated(() => client.collect(messages([{ text: "x" }])));
        if (variant.bidi) await expectUnauthenticated(() => collectStream(client.chat(messages([{ text: "x" }]))));
        const records = server.stats.requests;
        assert.equal(records.length, variant.bidi ? 4 : 3);
        for (const record of records) {
          assert.equal(record.auth, "rejected");
          assert.equal(record.reason, "missing");
          assert.equal(record.tokenHash, undefined);
          assert.equal(record.protocol, variant.protocol);
        }
        // Connect answers a unary Unauthenticated with HTTP 401; streams and gRPC with 200.
        assert.equal(records[0]?.status, variant.protocol === "connect" ? 401 : 200);
        // A unary request is read before the interceptor runs: its body is recorded.
        const unaryBody = bin(SayRequestSchema, { text: "x" });
        assertBytes(await fullBody(records[0] as RecordedRequest), variant.protocol === "connect" ? unaryBody : envelope(unaryBody));
      });

      it("refuses a token after revoke(token), for every method kind", async () => {
        const fresh = (await idp.login()).access_token;
        await client.say({ text: "ok" }, bearer(fresh));
        server.revoke(fresh);
        server.resetStats();
        await expectUnauthenticated(() => client.say({ text: "x" }, bearer(fresh)));
        await expectUnauthenticated(() => collectStream(client.countdown({ count: 1 }, bearer(fresh))));
        await expectUnauthenticated(() => client.collect(messages([{ text: "x" }]), bearer(fresh)));
        if (variant.bidi) {
          await expectUnauthenticated(() => collectStream(client.chat(messages([{ text: "x" }]), bearer(fresh))));
        }
        for (const record of server.stats.requests) {
          assert.equal(record.auth, "rejected");
          assert.equal(record.reason, "revoked");
          assert.equal(record.tokenHash, hashToken(fresh));
        }
        // Other tokens still work.
        assert.equal((await client.say({ text: "ok" }, bearer(token))).subject, "test-user");
      });

      it("refuses a token that is not a valid access token for this server", async () => {
        server.resetStats();
        const service = await oidc.clientCredentialsGrant(await idp.serviceConfig());
        assert.equal((await client.say({}, bearer(service.access_token))).subject, "test-service");

        const [header = "", payload = "", signature = ""] = token.split(".");
        const tampered = `${header}.${payload}.${signature.startsWith("A") ? "B" : "A"}${signature.slice(1)}`;
        await expectUnauthenticated(() => client.say({}, bearer(tampered)));
        await expectUnauthenticated(() => client.say({}, { headers: { authorization: "Basic Zm9vOmJhcg==" } }));
        assert.deepEqual(
          server.stats.requests.map((r) => [r.auth, r.reason]),
          [
            ["accepted", undefined],
            ["rejected", "invalid"],
            ["rejected", "malformed"],
          ],
        );
      });
    });
  }

  describe("knobs", () => {
    let server: TestServer;
    let client: Client<typeof EchoService>;
    before(async () => {
      server = await startServer({ issuer: idp.issuer, audience: idp.audience, http2: true });
      client = createClient(EchoService, createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2" }));
    });
    after(() => server.close());

    it("setRejectAll refuses valid tokens until turned off", async () => {
      server.setRejectAll(true);
      try {
        await expectUnauthenticated(() => client.say({}, bearer(token)));
        assert.equal(server.stats.requests.at(-1)?.reason, "reject-all");
      } finally {
        server.setRejectAll(false);
      }
      assert.equal((await client.say({}, bearer(token))).subject, "test-user");
    });

    it("setRequestDelay holds requests", async () => {
      server.setRequestDelay(200);
      try {
        const started = performance.now();
        await client.say({}, bearer(token));
        assert.ok(performance.now() - started >= 190);
      } finally {
        server.setRequestDelay(0);
      }
    });

    it("setUnauthenticatedAfter fails streams after n messages", async () => {
      server.setUnauthenticatedAfter(2);
      try {
        const seen: number[] = [];
        const err = ConnectError.from(
          await rejection(async () => {
            for await (const m of client.countdown({ count: 5 }, bearer(token))) seen.push(m.count);
          }),
        );
        assert.equal(err.code, Code.Unauthenticated);
        assert.deepEqual(seen, [5, 4]);
      } finally {
        server.setUnauthenticatedAfter(undefined);
      }
    });

    it("refuses an expired token (no clock tolerance)", async () => {
      // exp is whole seconds from an iat rounded down: a 1 s token may have 0.1 s left when
      // it is issued, and under load expired before its first call. 3 s leaves at least 2 s.
      const shortIdp = await startIdp({ accessTokenTtl: 3 });
      const shortServer = await startServer({ idp: shortIdp, http2: false });
      try {
        const short = createClient(EchoService, createConnectTransport({ baseUrl: shortServer.baseUrl, httpVersion: "1.1" }));
        const expiring = (await shortIdp.login()).access_token;
        assert.equal((await short.say({}, bearer(expiring))).subject, "test-user");
        const exp = decodeJwt(expiring).exp ?? 0;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, exp * 1000 - Date.now()) + 50));
        await expectUnauthenticated(() => short.say({}, bearer(expiring)));
        assert.equal(shortServer.stats.requests.at(-1)?.reason, "expired");
      } finally {
        await shortServer.close();
        await shortIdp.close();
      }
    });

    it("closes promptly with HTTP/2 sessions open", async () => {
      const other = await startServer({ idp, http2: true });
      const otherClient = createClient(EchoService, createGrpcTransport({ baseUrl: other.baseUrl }));
      await otherClient.say({}, bearer(token));
      const started = performance.now();
      await other.close();
      assert.ok(performance.now() - started < 1000);
      // The first call on the dead session fails with Internal (REFUSED_STREAM), later ones Unavailable.
      const err = ConnectError.from(await rejection(() => otherClient.say({}, bearer(token))));
      assert.ok([Code.Internal, Code.Unavailable].includes(err.code), err.message);
    });
  });
});

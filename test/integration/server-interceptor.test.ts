/**
 * connect-oidc/server's interceptor on real connect-node servers (HTTP/1.1 and HTTP/2), every
 * protocol and transport a user would pick, with our own client (createAuthInterceptor + the
 * token manager) against the real IdP: the call passes and the handler reads the verified
 * token; a missing scope is PermissionDenied with `insufficient_scope` and `scope=` and costs
 * no refresh (no refresh loop); a method that needs a stronger authentication answers the
 * RFC 9470 step-up challenge; a public method needs no token; an unreachable issuer is
 * Unavailable. No error holds a token.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, type TokenManager } from "../../src/index.js";
import { type Idp, startIdp } from "../support/idp.js";
import { type JwtIssuer, startJwtIssuer } from "../support/jwt-issuer.js";
import { createLeakScanner } from "../support/leaks.js";
import { startServer, type TestServer } from "../support/server.js";
import { KINDS, serverFor, transportFor } from "../support/transports.js";
import { refusalOf } from "../support/refusal.js";

const ECHO = "connectoidc.test.v1.EchoService";
const AUDIENCE = "https://api.example.test";

const withToken =
  (token: string | undefined): Interceptor =>
  (next) =>
  (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };

describe("createAuthServerInterceptor (real IdP, real servers, every transport)", () => {
  let idp: Idp;
  let issuer: JwtIssuer;
  let h1: TestServer;
  let h2: TestServer;
  let stepUp1: TestServer;
  let stepUp2: TestServer;
  let manager: TokenManager;
  const leaks = createLeakScanner();
  const errors: unknown[] = [];

  before(async () => {
    [idp, issuer] = await Promise.all([startIdp({ accessTokenTtl: 3600 }), startJwtIssuer()]);
    // The IdP grants "api": Say needs it; Countdown needs "admin", which it never grants.
    const methods = { [`${ECHO}/Say`]: ["api"], [`${ECHO}/Countdown`]: ["admin", "api"] };
    [h1, h2] = await Promise.all([startServer({ idp, http2: false, methods }), startServer({ idp, http2: true, methods })]);
    const stepUp = {
      issuer: issuer.issuer,
      jwksUri: issuer.jwksUri,
      audience: AUDIENCE,
      methods: { [`${ECHO}/Say`]: { acr: ["urn:example:mfa"], maxAgeSeconds: 300 }, [`${ECHO}/Countdown`]: { public: true } },
    };
    [stepUp1, stepUp2] = await Promise.all([startServer({ ...stepUp, http2: false }), startServer({ ...stepUp, http2: true })]);
    manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token);
    await manager.setTokens(login);
  });
  after(async () => {
    for (const error of errors) leaks.assertClean(error, "error");
    manager?.close();
    await Promise.all([h1, h2, stepUp1, stepUp2].map((s) => s?.close()));
    await issuer?.close();
    await idp?.close();
  });

  const failure = refusalOf(errors);

  for (const kind of KINDS) {
    describe(kind, () => {
      it("our client passes; the handler reads the verified token (its subject)", async () => {
        const client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(manager)]));
        const res = await client.say({ text: "hello" });
        assert.equal(res.subject, idp.accountId);
        const record = serverFor(kind, h1, h2).stats.requests.at(-1);
        assert.equal(record?.auth, "accepted");
      });

      it("a missing scope: PermissionDenied with insufficient_scope and scope=, one request, no refresh", async () => {
        const client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(manager)]));
        const server = serverFor(kind, h1, h2);
        const requests = server.stats.requests.length;
        const refreshes = idp.stats.tokenRequests;
        const error = await failure(
          (async () => {
            for await (const _ of client.countdown({ text: "x", count: 1 }));
          })(),
        );
        assert.equal(error.code, Code.PermissionDenied);
        assert.equal(error.metadata.get("www-authenticate"), 'Bearer error="insufficient_scope", scope="admin api"');
        assert.equal(server.stats.requests.length - requests, 1, "not retried");
        assert.equal(idp.stats.tokenRequests, refreshes, "no refresh: a new token of the same grant would not help");
      });

      it("step-up (RFC 9470): a token without the acr, or authenticated too long ago, gets insufficient_user_authentication", async () => {
        const now = Math.floor(Date.now() / 1000);
        const claims = { sub: "user-1", aud: AUDIENCE, scope: "api" };
        const weak = await issuer.sign({ ...claims, acr: "urn:example:pwd", auth_time: now });
        const old = await issuer.sign({ ...claims, acr: "urn:example:mfa", auth_time: now - 3600 });
        const strong = await issuer.sign({ ...claims, acr: "urn:example:mfa", auth_time: now - 10 });
        leaks.remember(weak, old, strong);
        const clientWith = (token: string | undefined) =>
          createClient(EchoService, transportFor(kind, stepUp1, stepUp2, [withToken(token)]));
        const challenge =
          'Bearer error="insufficient_user_authentication", error_description="step-up", acr_values="urn:example:mfa", max_age="300"';
        for (const token of [weak, old]) {
          const error = await failure(clientWith(token).say({ text: "x" }));
          assert.equal(error.code, Code.Unauthenticated);
          assert.equal(error.metadata.get("www-authenticate"), challenge);
          assert.match(error.rawMessage, /log in again with acr_values=urn:example:mfa and max_age=300/);
        }
        assert.equal((await clientWith(strong).say({ text: "x" })).subject, "user-1");
        // A public method needs no token.
        const counted: number[] = [];
        for await (const res of clientWith(undefined).countdown({ text: "x", count: 2 })) counted.push(res.count);
        assert.deepEqual(counted, [2, 1]);
        const missing = await failure(clientWith(undefined).say({ text: "x" }));
        assert.equal(missing.code, Code.Unauthenticated);
        assert.equal(missing.metadata.get("www-authenticate"), "Bearer");
      });

      it("an expired or forged token: Unauthenticated with invalid_token and the reason", async () => {
        const expired = await issuer.sign({ sub: "user-1", aud: AUDIENCE }, { expiresIn: -60 });
        const forged = await issuer.sign({ sub: "user-1", aud: AUDIENCE }, { alg: "HS256-with-public-key" });
        leaks.remember(expired, forged);
        for (const [token, reason] of [
          [expired, "expired"],
          [forged, "bad-alg"],
        ] as const) {
          const client = createClient(EchoService, transportFor(kind, stepUp1, stepUp2, [withToken(token)]));
          const error = await failure(client.say({ text: "x" }));
          assert.equal(error.code, Code.Unauthenticated);
          assert.equal(error.metadata.get("www-authenticate"), `Bearer error="invalid_token", error_description="${reason}"`);
        }
      });
    });
  }

  it("an issuer whose keys cannot be fetched: Unavailable, no challenge (the client does not throw its token away)", async () => {
    const gone = await startJwtIssuer();
    const token = await gone.sign({ sub: "user-1", aud: AUDIENCE });
    leaks.remember(token);
    await gone.close();
    const server = await startServer({ issuer: gone.issuer, jwksUri: gone.jwksUri, audience: AUDIENCE, http2: false });
    try {
      const client = createClient(EchoService, transportFor("connect-h1", server, server, [withToken(token)]));
      const error = await failure(client.say({ text: "x" }));
      assert.equal(error.code, Code.Unavailable);
      assert.equal(error.metadata.get("www-authenticate"), null);
    } finally {
      await server.close();
    }
  });
});

/**
 * Every combination of a login's DPoP key (none, the key its tokens are bound to, a key of
 * another algorithm than the manager's option) × its token type (DPoP, Bearer, none) × the
 * manager's `dpop` option (on, off), handed over through `setTokens` and read from a store
 * (a fileStore holding the login as connect-oidc writes it), asserting what a user sees: the
 * error (`ConfigurationError` from setTokens; `DPoPKeyError` with its reason, or
 * `TokenStoreError` corrupt, from the store) with no request sent, or the authorization
 * scheme a call carries on the wire to a real server that checks it (a DPoP resource server
 * for DPoP, a bearer one for bearer). A login carrying a key but bearer tokens is never used
 * by a DPoP manager: no silent downgrade.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { calculateJwkThumbprint } from "jose";
import * as oidc from "openid-client";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import {
  ConfigurationError,
  createAuthInterceptor,
  createTokenManager,
  type DPoPKey,
  DPoPKeyError,
  type TokenEndpointResponse,
  TokenStoreError,
} from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { type Idp, startIdp, type TokenResponse } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { startServer, type TestServer } from "../support/server.js";
import { bounded } from "../support/dpop-attempt-budget.js";

type KeyKind = "none" | "matching" | "other-algorithm";
type TypeKind = "DPoP" | "Bearer" | "none";
type Path = "setTokens" | "store read";

/** What the user sees. */
type Seen =
  | { readonly sent: "DPoP" | "Bearer" }
  | { readonly error: "ConfigurationError" }
  | { readonly error: "DPoPKeyError"; readonly reason: string }
  | { readonly error: "TokenStoreError"; readonly reason: string };

/** The expected outcome of one combination. */
function expected(key: KeyKind, type: TypeKind, dpop: boolean, path: Path): Seen {
  const hasKey = key !== "none";
  if (path === "setTokens") {
    if (dpop) return hasKey && type === "DPoP" ? { sent: "DPoP" } : { error: "ConfigurationError" };
    return !hasKey && type !== "DPoP" ? { sent: "Bearer" } : { error: "ConfigurationError" };
  }
  // A store holds `tokenType: "DPoP"` or nothing; anything else is not what connect-oidc writes.
  if (type === "Bearer") return { error: "TokenStoreError", reason: "corrupt" };
  if (!dpop) return hasKey || type === "DPoP" ? { error: "DPoPKeyError", reason: "unexpected" } : { sent: "Bearer" };
  if (type === "DPoP") return hasKey ? { sent: "DPoP" } : { error: "DPoPKeyError", reason: "missing" };
  return { error: "DPoPKeyError", reason: "not-bound" };
}

describe("DPoP key × token type × manager option, through setTokens and a store read (real IdP and servers)", () => {
  let idp: Idp;
  let dpopServer: TestServer;
  let bearerServer: TestServer;
  let dir: string;
  const leaks = createLeakScanner();
  /** A login bound to an ES256 key (the manager's algorithm), one bound to an ES384 key, and a bearer login. */
  const logins = {} as Record<"ES256" | "ES384" | "bearer", { login: TokenResponse; key?: DPoPKey; jkt?: string }>;

  const boundTo = async (algorithm: "ES256" | "ES384") => {
    const namedCurve = algorithm === "ES256" ? "P-256" : "P-384";
    const keyPair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve }, true, ["sign", "verify"])) as CryptoKeyPair;
    const login = await idp.login({ dpop: oidc.getDPoPHandle(await idp.cliConfig(), keyPair) });
    const jwk = await crypto.subtle.exportKey("jwk", keyPair.privateKey);
    leaks.remember(login.access_token, login.refresh_token, login.id_token, jwk.d);
    const { kty, crv, x, y } = jwk;
    return { login, key: { algorithm, keyPair }, jkt: await calculateJwkThumbprint({ kty, crv, x, y } as never) };
  };

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600, dpop: {} });
    dpopServer = await startServer({ idp, http2: false, dpop: {} });
    bearerServer = await startServer({ idp, http2: false });
    dir = await mkdtemp(join(tmpdir(), "connect-oidc-dpop-matrix-"));
    logins.ES256 = await boundTo("ES256");
    logins.ES384 = await boundTo("ES384");
    const bearer = await idp.login();
    leaks.remember(bearer.access_token, bearer.refresh_token, bearer.id_token);
    logins.bearer = { login: bearer };
  });
  after(async () => {
    await dpopServer.close();
    await bearerServer.close();
    await idp.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The login handed over: bound tokens only with a DPoP type (a key beside bearer tokens binds nothing). */
  const responseFor = (key: KeyKind, type: TypeKind): { response: TokenEndpointResponse; jkt: string | undefined } => {
    const keyed = key === "none" ? undefined : key === "matching" ? logins.ES256 : logins.ES384;
    const tokens = type === "DPoP" ? (keyed ?? logins.ES256).login : logins.bearer.login;
    const { token_type: _type, ...rest } = { ...tokens } as TokenEndpointResponse;
    return {
      response: {
        ...rest,
        ...(type === "none" ? {} : { token_type: type }),
        ...(keyed?.key !== undefined ? { dpopKey: keyed.key } : {}),
      } as TokenEndpointResponse,
      jkt: keyed?.jkt,
    };
  };

  /** The login in a fileStore as connect-oidc writes it (0600), with this key and token type. */
  const storedFile = async (key: KeyKind, type: TypeKind, issuer: string, clientId: string) => {
    const { response } = responseFor(key, type);
    const now = Date.now();
    const record: Record<string, unknown> = {
      version: 1,
      issuer,
      clientId,
      accessToken: response.access_token,
      refreshToken: response.refresh_token,
      issuedAt: now,
      expiresAt: now + 600_000,
      ...(type === "none" ? {} : { tokenType: type }),
    };
    if (response.dpopKey !== undefined) {
      const { algorithm, keyPair } = response.dpopKey;
      const privateJwk = await crypto.subtle.exportKey("jwk", keyPair.privateKey);
      const { kty, crv, x, y, d } = privateJwk;
      record.dpopKey = { algorithm, publicJwk: { kty, crv, x, y }, privateJwk: { kty, crv, x, y, d } };
    }
    const path = join(dir, `${randomUUID()}.json`);
    await writeFile(path, JSON.stringify(record), { mode: 0o600 });
    return path;
  };

  /** One call through the interceptor; the scheme it carried (recorded just before the wire) and the server's verdict. */
  const call = async (tokens: ReturnType<typeof createTokenManager>, server: TestServer) => {
    const schemes: string[] = [];
    const wire: Interceptor = (next) => async (req) => {
      schemes.push(req.header.get("authorization")?.split(" ")[0] ?? "(none)");
      return next(req);
    };
    const client = createClient(
      EchoService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(tokens), wire] }),
    );
    server.resetStats();
    const error = await client.say({ text: "x" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    return { schemes, error, requests: server.stats.requests };
  };

  const seenOf = (error: unknown): Seen => {
    if (error instanceof DPoPKeyError) return { error: "DPoPKeyError", reason: error.reason };
    if (error instanceof TokenStoreError) return { error: "TokenStoreError", reason: error.reason };
    if (error instanceof ConfigurationError) return { error: "ConfigurationError" };
    throw error;
  };

  for (const path of ["setTokens", "store read"] as const) {
    for (const dpop of [true, false]) {
      for (const key of ["none", "matching", "other-algorithm"] as const) {
        for (const type of ["DPoP", "Bearer", "none"] as const) {
          const want = expected(key, type, dpop, path);
          const name = `${path}, dpop ${dpop ? "on" : "off"}, key ${key}, token type ${type}: ${"sent" in want ? `sent as ${want.sent}` : `${want.error}${"reason" in want ? ` ${want.reason}` : ""}`}`;
          it(name, bounded, async () => {
            const options = {
              issuer: idp.issuer,
              clientId: idp.clientId,
              allowInsecureRequests: true,
              ...(dpop ? { dpop: true as const } : {}),
            };
            const { response, jkt } = responseFor(key, type);
            let tokens: ReturnType<typeof createTokenManager>;
            let failure: unknown;
            if (path === "setTokens") {
              tokens = createTokenManager(options);
              failure = await tokens.setTokens(response).then(
                () => undefined,
                (e: unknown) => e,
              );
            } else {
              tokens = createTokenManager({ ...options, store: fileStore(await storedFile(key, type, idp.issuer, idp.clientId)) });
              failure = await tokens.getAccessToken().then(
                () => undefined,
                (e: unknown) => e,
              );
            }
            try {
              const server = dpop ? dpopServer : bearerServer;
              if (failure !== undefined) {
                leaks.assertClean(failure, "error");
                assert.deepEqual(seenOf(failure), want);
                if (path === "setTokens") return;
                // A store read that fails: the call fails before anything is sent.
                const { schemes, error, requests } = await call(tokens, server);
                assert.equal(ConnectError.from(error).code, Code.Unauthenticated);
                assert.deepEqual(seenOf((error as ConnectError).cause), want);
                assert.deepEqual([schemes, requests.length], [[], 0], "nothing sent");
                leaks.assertClean(error, "call error");
                return;
              }
              assert.ok("sent" in want, `expected ${JSON.stringify(want)}, but the login was taken`);
              const { schemes, error, requests } = await call(tokens, server);
              assert.equal(error, undefined, String(error));
              assert.deepEqual(schemes, [want.sent]);
              assert.equal(requests[0]?.auth, "accepted");
              if (want.sent === "DPoP") assert.equal(requests[0]?.dpop?.jkt, jkt, "the proof is made with the login's key");
            } finally {
              tokens.close();
            }
          });
        }
      }
    }
  }
});

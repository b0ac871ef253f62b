/**
 * `startTestServer`: a real connect-node server on a loopback port (HTTP/1.1 or h2c) serving
 * the routes a test passes, behind `connect-oidc/server`: the early-refusal Node wrapper and
 * the server interceptor, with a verifier for the test identity provider's tokens (or the
 * test's own). @connectrpc/connect-node is loaded when a server starts, not on import.
 */
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { ConfigurationError } from "../errors.js";
import { withAuthentication } from "../server/early-refusal.js";
import { type AuthServerOptions, createAuthServerInterceptor } from "../server/interceptor.js";
import type { DPoPVerifierOptions } from "../server/options.js";
import type { MethodRequirements } from "../server/policy.js";
import { createTokenVerifier, type TokenVerifier } from "../server/verifier.js";

/**
 * Options of {@link startTestServer}.
 *
 * @example
 * ```ts
 * import { startTestServer } from "connect-oidc/testing";
 * import { ElizaService } from "./gen/eliza_pb.js";
 *
 * const server = await startTestServer({
 *   identityProvider: idp, // from startTestIdentityProvider()
 *   http2: true,
 *   dpop: { required: true },
 *   methods: { "connectrpc.eliza.v1.ElizaService/Say": ["api"] },
 *   routes: (router) => router.service(ElizaService, { say: (req) => ({ sentence: req.sentence }) }),
 * });
 * ```
 */
export interface TestServerOptions {
  /** The services, as connect-node's `connectNodeAdapter` takes them. */
  readonly routes: (router: ConnectRouter) => void;
  /**
   * Accept the access tokens of this identity provider (its issuer, audience and keys):
   * a {@link TestIdentityProvider}, or any issuer with those three. Needed unless `verifier` is given.
   */
  readonly identityProvider?: { readonly issuer: string; readonly audience: string; readonly jwksUri?: string };
  /** DPoP for the verifier made from `identityProvider` (`true`: DPoP allowed, no nonces). Default: bearer only. */
  readonly dpop?: true | DPoPVerifierOptions;
  /** A verifier of your own (then `identityProvider` and `dpop` are not used). */
  readonly verifier?: TokenVerifier;
  /** What each method requires (scopes, acr, public methods). Default: a valid token. */
  readonly methods?: MethodRequirements;
  /** HTTP/2 over cleartext (h2c). Default false: HTTP/1.1. */
  readonly http2?: boolean;
  /**
   * Refuse a request without a valid token before its body is read (`withAuthentication`).
   * Default true; false: only the server interceptor checks (after connect-node read the body).
   */
  readonly earlyRefusal?: boolean;
  /** More server interceptors, run after the authentication one. */
  readonly interceptors?: readonly Interceptor[];
}

/**
 * A running test server.
 *
 * @example
 * ```ts
 * await using server = await startTestServer({ identityProvider: idp, routes });
 * const transport = createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" });
 * ```
 */
export interface TestServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: a transport's `baseUrl`. */
  readonly baseUrl: string;
  /** Whether it speaks HTTP/2 (h2c) instead of HTTP/1.1. */
  readonly http2: boolean;
  /** The verifier it checks tokens with. */
  readonly verifier: TokenVerifier;
  /** Stop listening and drop every connection (HTTP/2 sessions too). Idempotent. */
  close(): Promise<void>;
}

function verifierFor(options: TestServerOptions): TokenVerifier {
  if (options.verifier) return options.verifier;
  const idp = options.identityProvider;
  if (!idp) throw new ConfigurationError("startTestServer: pass `identityProvider` (e.g. from startTestIdentityProvider) or a `verifier`");
  return createTokenVerifier({
    issuer: idp.issuer,
    audience: idp.audience,
    ...(idp.jwksUri === undefined ? {} : { jwksUri: idp.jwksUri }),
    ...(options.dpop === undefined ? {} : { dpop: options.dpop === true ? {} : options.dpop }),
    allowInsecureRequests: new URL(idp.issuer).protocol === "http:",
  });
}

type Listening = { readonly server: http.Server | http2.Http2Server; close(): Promise<void> };

function listen(handler: http.RequestListener, useHttp2: boolean): Promise<Listening> {
  const h2 = useHttp2 ? http2.createServer(handler as unknown as Parameters<typeof http2.createServer>[0]) : undefined;
  const server = h2 ?? http.createServer(handler);
  const sessions = new Set<http2.Http2Session>();
  if (h2) {
    h2.on("session", (session) => {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
    });
  }
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      if (server instanceof http.Server) server.closeAllConnections();
      for (const session of sessions) session.destroy();
    }));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve({ server, close }));
  });
}

/**
 * Starts a connect-node server on a free loopback port that accepts only calls with a valid
 * access token (Connect, gRPC and gRPC-web), refusing the others with the right
 * `WWW-Authenticate` challenge. Handlers read the verified token with
 * `ctx.values.get(verifiedTokenKey)` (from `connect-oidc/server`).
 *
 * @example
 * ```ts
 * import { createClient } from "@connectrpc/connect";
 * import { createConnectTransport } from "@connectrpc/connect-node";
 * import { verifiedTokenKey } from "connect-oidc/server";
 * import { startTestIdentityProvider, startTestServer } from "connect-oidc/testing";
 * import { ElizaService } from "./gen/eliza_pb.js";
 *
 * await using idp = await startTestIdentityProvider();
 * await using server = await startTestServer({
 *   identityProvider: idp,
 *   routes: (router) =>
 *     router.service(ElizaService, { say: (req, ctx) => ({ sentence: `hi ${ctx.values.get(verifiedTokenKey)?.subject}` }) }),
 * });
 * const client = createClient(ElizaService, createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }));
 * ```
 */
export async function startTestServer(options: TestServerOptions): Promise<TestServer> {
  const verifier = verifierFor(options);
  const { connectNodeAdapter } = await import("@connectrpc/connect-node");
  const authOptions: AuthServerOptions = options.methods === undefined ? {} : { methods: options.methods };
  const adapter = connectNodeAdapter({
    routes: options.routes,
    interceptors: [createAuthServerInterceptor(verifier, authOptions), ...(options.interceptors ?? [])],
  });
  const handler = options.earlyRefusal === false ? adapter : withAuthentication(adapter, verifier, authOptions);
  const useHttp2 = options.http2 === true;
  const listening = await listen(handler as http.RequestListener, useHttp2);
  const { port } = listening.server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    http2: useHttp2,
    verifier,
    close: listening.close,
    [Symbol.asyncDispose]: listening.close,
  };
}

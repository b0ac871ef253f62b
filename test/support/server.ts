/**
 * A real connect-node server for integration tests: EchoService over the Connect,
 * gRPC and gRPC-web protocols, on HTTP/1.1 or cleartext HTTP/2 (h2c), behind a
 * bearer-token check done with jose against the test IdP's JWKS.
 *
 * Every incoming HTTP request is recorded in `stats.requests` with the raw body
 * bytes as they arrived (teed off the Node request stream), the protocol, and a
 * fingerprint of the token (its jti and a hash — never the token itself).
 *
 * With `dpop` the server is a DPoP resource server (RFC 9449 §7): every call needs
 * `authorization: DPoP <token>` with a DPoP-bound access token and a valid `DPoP` proof
 * (test/support/dpop-verify.ts). Refusals are Unauthenticated with
 * - `WWW-Authenticate: DPoP error="use_dpop_nonce"` (and `DPoP-Nonce`): the proof lacks a
 *   nonce or carries a stale one — re-send with the nonce, no token refresh needed;
 * - `WWW-Authenticate: DPoP error="invalid_dpop_proof"`: the proof is missing or wrong;
 * - `WWW-Authenticate: DPoP error="invalid_token"`: the token (missing, not DPoP scheme,
 *   expired, revoked, invalid) — as the `Bearer` challenge is in bearer mode.
 * `error_description` names the reason. With nonces on, every response carries the current
 * `DPoP-Nonce` (a success in its response header, a refusal in its error metadata: HTTP
 * headers for Connect, trailers — or the headers of a trailers-only answer — for gRPC).
 */
import { createHash } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createContextKey, createContextValues } from "@connectrpc/connect";
import type { ConnectRouter, HandlerContext, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createRemoteJWKSet, decodeJwt, errors as joseErrors, jwtVerify } from "jose";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createDpopNonces, type DpopNonces } from "./dpop-nonces.js";
import { createDpopVerifier, type DpopReason, dpopTokenOf } from "./dpop-verify.js";

export type WireProtocol = "connect" | "grpc" | "grpc-web" | "unknown";

export type RejectReason = "missing" | "malformed" | "invalid" | "expired" | "revoked" | "reject-all" | "dpop";

/** A DPoP server's verdict on one request (never the proof or the token). */
export interface RecordedDpop {
  readonly ok: boolean;
  /** Why it was refused: a proof reason, "not-dpop-scheme" or "token" (see `reason`). */
  readonly reason?: DpopReason | "not-dpop-scheme" | "token";
  /** The proof key's RFC 7638 thumbprint, once its signature checked out. */
  readonly jkt?: string;
  /** The nonce the proof carried. */
  readonly nonce?: string;
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly httpVersion: string;
  readonly protocol: WireProtocol;
  readonly contentType: string | undefined;
  /** The bearer token's `jti` (read without verification), when it has one. */
  readonly jti: string | undefined;
  /** `hashToken(token)` of the bearer token sent, when one was sent. */
  readonly tokenHash: string | undefined;
  /** "unchecked": the auth interceptor never saw the request (e.g. unknown path). */
  readonly auth: "accepted" | "rejected" | "unchecked";
  readonly reason: RejectReason | undefined;
  /** The verified `sub`. */
  readonly subject: string | undefined;
  /** HTTP status of the response, once sent (200 for most gRPC errors). */
  readonly status: number | undefined;
  /** DPoP servers only: the proof check; undefined when the check was not reached. */
  readonly dpop: RecordedDpop | undefined;
  /**
   * The raw request body received so far (await `done` for all of it): exactly
   * the bytes that arrived, envelopes and all, uncompressed or not. A streaming
   * call rejected over HTTP/2 may show none: the server answers on the HEADERS
   * frame and closes the stream before the client sends its DATA.
   */
  readonly body: Uint8Array;
  /** Settles when the request body has ended or the request was torn down. */
  readonly done: Promise<void>;
}

export interface ServerStats {
  readonly requests: readonly RecordedRequest[];
}

export interface StartServerOptions {
  /** The test IdP (from startIdp), or its issuer / JWKS URI / audience. */
  readonly idp?: { readonly issuer: string; readonly jwksUri: string; readonly audience: string };
  readonly issuer?: string;
  /** Default: the issuer's discovery document's `jwks_uri`. */
  readonly jwksUri?: string;
  readonly audience?: string;
  /** true: HTTP/2 over cleartext (h2c); false: HTTP/1.1. */
  readonly http2: boolean;
  /**
   * Be a DPoP resource server (see the module comment). `requireNonce`: proofs must carry
   * the server's nonce, which rotates every `nonceRotateMs` (default: only on
   * `dpop.rotateNonce()`); the current and the previous one are accepted. `iatWindowSeconds`:
   * how far a proof's `iat` may be from now (default 60). Default: bearer tokens.
   */
  readonly dpop?: { readonly requireNonce?: boolean; readonly nonceRotateMs?: number; readonly iatWindowSeconds?: number };
}

/** DPoP knobs of a test server (inert on a bearer server). */
export interface TestServerDpop {
  /** Replace the nonce now (the one replaced stays accepted until the next rotation). */
  rotateNonce(): void;
  /** The nonce a response would carry now; undefined without nonces. */
  readonly currentNonce: string | undefined;
}

export interface TestServer {
  /** http://127.0.0.1:port */
  readonly baseUrl: string;
  readonly http2: boolean;
  readonly stats: ServerStats;
  resetStats(): void;
  /** Refuse this exact token from now on (server-side revocation). */
  revoke(token: string): void;
  /** Every request Unauthenticated, valid token or not. */
  setRejectAll(rejectAll: boolean): void;
  /** Wait this long in the auth interceptor before checking the token. */
  setRequestDelay(ms: number): void;
  /**
   * Streaming responses (Countdown, Chat) fail with Unauthenticated after this
   * many messages were sent: models a token that a server stops accepting
   * mid-stream. undefined = never.
   */
  setUnauthenticatedAfter(messages: number | undefined): void;
  readonly dpop: TestServerDpop;
  close(): Promise<void>;
}

/** A short, stable fingerprint of a token, as recorded in `tokenHash`. */
export function hashToken(token: string): string {
  return `sha256:${createHash("sha256").update(token).digest("hex").slice(0, 16)}`;
}

function protocolOf(method: string | undefined, contentType: string | undefined): WireProtocol {
  const ct = contentType?.toLowerCase() ?? "";
  if (ct.startsWith("application/grpc-web")) return "grpc-web";
  if (ct.startsWith("application/grpc")) return "grpc";
  if (ct.startsWith("application/connect+") || ct.startsWith("application/proto") || ct.startsWith("application/json")) {
    return "connect";
  }
  if (method === "GET") return "connect";
  return "unknown";
}

function bearerOf(authorization: string | null | undefined): string | undefined {
  const match = /^Bearer +(\S+)\s*$/i.exec(authorization ?? "");
  return match?.[1];
}

const kSubject = createContextKey<string>("", { description: "verified JWT sub" });
const kRecord = createContextKey<MutableRecord | undefined>(undefined, { description: "request record" });

interface MutableRecord {
  method: string;
  path: string;
  httpVersion: string;
  protocol: WireProtocol;
  contentType: string | undefined;
  jti: string | undefined;
  tokenHash: string | undefined;
  auth: "accepted" | "rejected" | "unchecked";
  reason: RejectReason | undefined;
  subject: string | undefined;
  status: number | undefined;
  dpop: RecordedDpop | undefined;
  readonly chunks: Buffer[];
  readonly body: Uint8Array;
  readonly done: Promise<void>;
}

function unauthenticated(reason: RejectReason, message: string, cause?: unknown, challenge?: Record<string, string>): ConnectError {
  return new ConnectError(
    message,
    Code.Unauthenticated,
    challenge ?? { "www-authenticate": `Bearer error="invalid_token", error_description="${reason}"` },
    undefined,
    cause,
  );
}

/** The `WWW-Authenticate: DPoP` challenge (and `DPoP-Nonce`) of a DPoP server's refusal. */
function dpopChallenge(error: string, description: string, nonce: string | undefined): Record<string, string> {
  return {
    "www-authenticate": `DPoP error="${error}", error_description="${description}"`,
    ...(nonce === undefined ? {} : { "dpop-nonce": nonce }),
  };
}

export async function startServer(options: StartServerOptions): Promise<TestServer> {
  const issuer = options.issuer ?? options.idp?.issuer;
  const audience = options.audience ?? options.idp?.audience;
  if (!issuer || !audience) throw new Error("startServer: issuer and audience (or idp) are required");
  let jwksUri = options.jwksUri ?? options.idp?.jwksUri;
  if (!jwksUri) {
    const res = await fetch(new URL("/.well-known/openid-configuration", issuer));
    if (!res.ok) throw new Error(`startServer: discovery failed: HTTP ${res.status}`);
    jwksUri = ((await res.json()) as { jwks_uri: string }).jwks_uri;
  }
  const jwks = createRemoteJWKSet(new URL(jwksUri));

  let records: MutableRecord[] = [];
  const revoked = new Set<string>();
  let rejectAll = false;
  let requestDelayMs = 0;
  let unauthenticatedAfter: number | undefined;
  const dpopOptions = options.dpop;
  const dpopNonces: DpopNonces | undefined = dpopOptions?.requireNonce
    ? createDpopNonces({ rotateMs: dpopOptions.nonceRotateMs })
    : undefined;
  const dpopVerifier = dpopOptions
    ? createDpopVerifier({
        nonces: dpopNonces,
        ...(dpopOptions.iatWindowSeconds !== undefined ? { iatWindowSeconds: dpopOptions.iatWindowSeconds } : {}),
      })
    : undefined;
  const tokenOf = (authorization: string | null | undefined) => (dpopOptions ? dpopTokenOf(authorization) : bearerOf(authorization));

  const authInterceptor: Interceptor = (next) => async (req) => {
    const record = req.contextValues.get(kRecord);
    // A DPoP server's refusals carry its challenge and nonce; the reason in error_description.
    const nonce = dpopNonces?.current();
    const reject = async (reason: RejectReason, message: string, cause?: unknown, dpopError?: { error: string; description: string }) => {
      if (record && dpopOptions && !record.dpop) record.dpop = { ok: false, reason: "token" };
      if (record) {
        record.auth = "rejected";
        record.reason = reason;
        // Read what the client sends before refusing, so the raw body is recorded on HTTP/2
        // too (there a refusal can beat the client's data). Bounded: a bidi client may wait.
        if (req.stream) {
          const drain = (async () => {
            try {
              for await (const _ of req.message) {
                // recorded by the request tap
              }
            } catch {
              // the client went away
            }
          })();
          await Promise.race([drain, sleep(1000)]);
        }
      }
      const challenge = dpopOptions
        ? dpopChallenge(dpopError?.error ?? "invalid_token", dpopError?.description ?? reason, nonce)
        : undefined;
      return unauthenticated(reason, message, cause, challenge);
    };

    if (requestDelayMs > 0) await sleep(requestDelayMs, undefined, { signal: req.signal });

    const authorization = req.header.get("authorization");
    const token = tokenOf(authorization);
    if (rejectAll) throw await reject("reject-all", "server refuses every token (setRejectAll)");
    if (authorization === null) throw await reject("missing", dpopOptions ? "missing DPoP token" : "missing bearer token");
    if (token === undefined) {
      if (!dpopOptions) throw await reject("malformed", "authorization is not a bearer token");
      if (record) record.dpop = { ok: false, reason: "not-dpop-scheme" };
      throw await reject("malformed", "authorization is not a DPoP token");
    }
    if (revoked.has(hashToken(token))) throw await reject("revoked", "token revoked");
    let boundJkt: string | undefined;
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer,
        audience,
        typ: "at+jwt",
        algorithms: ["RS256"],
        clockTolerance: 0,
      });
      const subject = payload.sub ?? "";
      const cnf = payload.cnf as { jkt?: unknown } | undefined;
      boundJkt = typeof cnf?.jkt === "string" ? cnf.jkt : undefined;
      if (record && !dpopVerifier) {
        record.auth = "accepted";
        record.subject = subject;
      }
      req.contextValues.set(kSubject, subject);
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw await reject("expired", "token expired", err);
      throw await reject("invalid", "token invalid", err);
    }
    if (dpopVerifier) {
      const result = await dpopVerifier.verify({
        proof: req.header.get("dpop"),
        accessToken: token,
        boundJkt,
        method: req.requestMethod,
        url: req.url,
      });
      if (record) {
        record.dpop = {
          ok: result.ok,
          ...(result.ok ? {} : { reason: result.reason }),
          ...(result.jkt === undefined ? {} : { jkt: result.jkt }),
          ...(result.nonce === undefined ? {} : { nonce: result.nonce }),
        };
      }
      if (!result.ok) {
        throw await reject("dpop", `DPoP proof refused: ${result.reason}`, undefined, { error: result.error, description: result.reason });
      }
      if (record) {
        record.auth = "accepted";
        record.subject = req.contextValues.get(kSubject);
      }
    }
    const res = await next(req);
    if (nonce !== undefined) res.header.set("dpop-nonce", nonce);
    return res;
  };

  const checkStream = (sent: number) => {
    if (unauthenticatedAfter !== undefined && sent >= unauthenticatedAfter) {
      const challenge = dpopOptions ? dpopChallenge("invalid_token", "expired", dpopNonces?.current()) : undefined;
      throw unauthenticated("expired", "token no longer accepted (setUnauthenticatedAfter)", undefined, challenge);
    }
  };

  const routes = (router: ConnectRouter) => {
    router.service(EchoService, {
      say(req, ctx: HandlerContext) {
        return { text: req.text, payload: req.payload, subject: ctx.values.get(kSubject) };
      },
      async *countdown(req, ctx: HandlerContext) {
        const subject = ctx.values.get(kSubject);
        for (let n = req.count, sent = 0; n > 0; n--, sent++) {
          checkStream(sent);
          yield { text: req.text, payload: req.payload, subject, count: n };
        }
      },
      async collect(reqs, ctx: HandlerContext) {
        const texts: string[] = [];
        const payloads: Uint8Array[] = [];
        for await (const req of reqs) {
          texts.push(req.text);
          payloads.push(req.payload);
        }
        return {
          text: texts.join(""),
          payload: Buffer.concat(payloads),
          subject: ctx.values.get(kSubject),
          count: texts.length,
        };
      },
      async *chat(reqs, ctx: HandlerContext) {
        const subject = ctx.values.get(kSubject);
        let sent = 0;
        for await (const req of reqs) {
          checkStream(sent);
          sent++;
          yield { text: req.text, payload: req.payload, subject, count: sent };
        }
      },
    });
  };

  const recordsByRequest = new WeakMap<object, MutableRecord>();
  const adapter = connectNodeAdapter({
    routes,
    connect: true,
    grpc: true,
    grpcWeb: true,
    interceptors: [authInterceptor],
    readMaxBytes: 64 * 1024 * 1024,
    writeMaxBytes: 64 * 1024 * 1024,
    contextValues: (req) => createContextValues().set(kRecord, recordsByRequest.get(req)),
  });

  const onRequest = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const contentType = req.headers["content-type"];
    const token = tokenOf(req.headers.authorization);
    let jti: string | undefined;
    if (token !== undefined) {
      try {
        const claim = decodeJwt(token).jti;
        jti = typeof claim === "string" ? claim : undefined;
      } catch {
        jti = undefined;
      }
    }
    const chunks: Buffer[] = [];
    let bodyEnded!: () => void;
    const done = new Promise<void>((resolve) => {
      bodyEnded = resolve;
      req.once("end", resolve);
      req.once("close", resolve);
      req.once("error", () => resolve());
    });
    const record: MutableRecord = {
      method: req.method ?? "",
      path: (req.url ?? "").split("?")[0] ?? "",
      httpVersion: req.httpVersion,
      protocol: protocolOf(req.method, contentType),
      contentType,
      jti,
      tokenHash: token === undefined ? undefined : hashToken(token),
      auth: "unchecked",
      reason: undefined,
      subject: undefined,
      status: undefined,
      dpop: undefined,
      chunks,
      get body() {
        return new Uint8Array(Buffer.concat(chunks));
      },
      done,
    };
    records.push(record);
    recordsByRequest.set(req, record);

    // Tee the body where it enters the stream: both the HTTP/1.1 parser and the
    // HTTP/2 compat layer push() every chunk received, whoever reads it later.
    // (A "data" listener would miss bodies Node dumps unread after a rejection.)
    const push = req.push;
    req.push = function tee(chunk: unknown, encoding?: BufferEncoding) {
      if (chunk === null) bodyEnded();
      else if (chunk !== undefined) chunks.push(Buffer.from(chunk as Uint8Array));
      return push.call(this, chunk, encoding);
    };
    res.once("finish", () => {
      record.status = res.statusCode;
    });
    adapter(req, res);
  };

  let server: http.Server | http2.Http2Server;
  const sockets = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  if (options.http2) {
    const h2 = http2.createServer({}, onRequest);
    h2.on("session", (session) => {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
    });
    server = h2;
  } else {
    server = http.createServer(onRequest);
  }
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    }));

  return {
    baseUrl: `http://127.0.0.1:${port}`,
    http2: options.http2,
    stats: {
      get requests() {
        return records;
      },
    },
    resetStats() {
      records = [];
    },
    revoke(token) {
      revoked.add(hashToken(token));
    },
    setRejectAll(value) {
      rejectAll = value;
    },
    setRequestDelay(ms) {
      requestDelayMs = ms;
    },
    setUnauthenticatedAfter(messages) {
      unauthenticatedAfter = messages;
    },
    dpop: {
      rotateNonce() {
        dpopNonces?.rotate();
      },
      get currentNonce() {
        return dpopNonces?.current();
      },
    },
    close,
  };
}

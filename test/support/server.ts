/**
 * A real connect-node server for integration tests: EchoService over the Connect,
 * gRPC and gRPC-web protocols, on HTTP/1.1 or cleartext HTTP/2 (h2c), behind
 * connect-oidc/server (createTokenVerifier + createAuthServerInterceptor, and with `early`
 * withAuthentication) against the test IdP's JWKS, with no clock tolerance. Around it, this
 * server's own knobs (revoke, setRejectAll, setRequestDelay, setUnauthenticatedAfter).
 *
 * Every incoming HTTP request is recorded in `stats.requests` with the raw body
 * bytes as they arrived (teed off the Node request stream), the protocol, and a
 * fingerprint of the token (its jti and a hash — never the token itself).
 *
 * With `dpop` the server is a DPoP resource server (RFC 9449 §7): every call needs
 * `authorization: DPoP <token>` with a DPoP-bound access token and a valid `DPoP` proof
 * (checked by connect-oidc/server; test/support/dpop-verify.ts names the reasons recorded).
 * Refusals are Unauthenticated with
 * - `WWW-Authenticate: DPoP error="use_dpop_nonce"` (and `DPoP-Nonce`): the proof lacks a
 *   nonce or carries a stale one — re-send with the nonce, no token refresh needed;
 * - `WWW-Authenticate: DPoP error="invalid_dpop_proof"`: the proof is missing or wrong;
 * - `WWW-Authenticate: DPoP error="invalid_token"`: the token (not DPoP scheme, expired,
 *   revoked, invalid) — as the `Bearer` challenge is in bearer mode; a missing token gets
 *   a bare `DPoP` / `Bearer` challenge (RFC 6750 §3.1).
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
import { decodeJwt } from "jose";
import {
  createAuthServerInterceptor,
  createTokenVerifier,
  type DPoPNonces,
  type MethodRequirements,
  type TokenRefusal,
  type TokenVerifierOptions,
  verifiedTokenKey,
  withAuthentication,
} from "../../src/server.js";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createDpopNonces, type DpopNonces } from "./dpop-nonces.js";
import { type DpopReason, dpopTokenOf } from "./dpop-verify.js";

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
   * how far a proof's `iat` may be from now (default 60). `nonces`: require nonces from this
   * source instead (e.g. connect-oidc/server's createDPoPNonces; `rotateNonce` is then inert).
   * Default: bearer tokens.
   */
  readonly dpop?: {
    readonly requireNonce?: boolean;
    readonly nonceRotateMs?: number;
    readonly iatWindowSeconds?: number;
    readonly nonces?: DPoPNonces;
  };
  /** Per-method requirements for connect-oidc/server's interceptor. Default: a valid token. */
  readonly methods?: MethodRequirements;
  /**
   * Put connect-oidc/server's `withAuthentication` around the adapter: a request without a
   * valid token is refused before its body is read (its record stays "unchecked"). Default false.
   */
  readonly early?: boolean;
  /** More verifier options (e.g. `requireTyp`, `clockToleranceSeconds`, `jwks`). */
  readonly verifier?: Partial<TokenVerifierOptions>;
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

/** The RFC 9449 proof reasons, recorded as the DPoP verdict of a refusal. */
const PROOF_REASONS: ReadonlySet<string> = new Set<DpopReason>([
  "missing-proof",
  "multiple-proofs",
  "malformed-proof",
  "bad-alg",
  "wrong-typ",
  "bad-signature",
  "htm-mismatch",
  "htu-mismatch",
  "iat-outside-window",
  "ath-mismatch",
  "token-not-bound",
  "jkt-mismatch",
  "jti-replayed",
  "nonce-missing",
  "nonce-stale",
]);

/** A refusal of the DPoP proof (bad-alg, wrong-typ, bad-signature can also be the token's own). */
const isProofRefusal = (refusal: TokenRefusal) =>
  refusal.error === "invalid_dpop_proof" || refusal.error === "use_dpop_nonce" || refusal.reason === "token-not-bound";

/** connect-oidc/server's refusal reason, in this server's coarser record. */
function rejectReasonOf(refusal: TokenRefusal): RejectReason {
  if (isProofRefusal(refusal)) return "dpop";
  switch (refusal.reason) {
    case "missing":
    case "malformed":
    case "expired":
      return refusal.reason;
    default:
      return "invalid";
  }
}

function dpopRecordOf(refusal: TokenRefusal): RecordedDpop {
  if (refusal.reason === "malformed") return { ok: false, reason: "not-dpop-scheme" };
  if (!isProofRefusal(refusal) || !PROOF_REASONS.has(refusal.reason)) return { ok: false, reason: "token" };
  return {
    ok: false,
    reason: refusal.reason as DpopReason,
    ...(refusal.jkt === undefined ? {} : { jkt: refusal.jkt }),
    ...(refusal.proofNonce === undefined ? {} : { nonce: refusal.proofNonce }),
  };
}

/** The nonce a (verified) proof carried. */
function proofNonceOf(proof: string | null): string | undefined {
  if (!proof) return undefined;
  try {
    const nonce = decodeJwt(proof).nonce;
    return typeof nonce === "string" ? nonce : undefined;
  } catch {
    return undefined;
  }
}

export async function startServer(options: StartServerOptions): Promise<TestServer> {
  const issuer = options.issuer ?? options.idp?.issuer;
  const audience = options.audience ?? options.idp?.audience;
  if (!issuer || !audience) throw new Error("startServer: issuer and audience (or idp) are required");
  const jwksUri = options.jwksUri ?? options.idp?.jwksUri;

  let records: MutableRecord[] = [];
  const revoked = new Set<string>();
  let rejectAll = false;
  let requestDelayMs = 0;
  let unauthenticatedAfter: number | undefined;
  const dpopOptions = options.dpop;
  const testNonces: DpopNonces | undefined = dpopOptions?.requireNonce
    ? createDpopNonces({ rotateMs: dpopOptions.nonceRotateMs })
    : undefined;
  const dpopNonces: DPoPNonces | undefined = dpopOptions?.nonces ?? testNonces;
  // The verification itself is connect-oidc/server's; this server records and adds test knobs.
  const verifier = createTokenVerifier({
    issuer,
    audience,
    ...(jwksUri === undefined ? {} : { jwksUri }),
    algorithms: ["RS256"],
    clockToleranceSeconds: 0,
    allowInsecureRequests: true,
    ...(dpopOptions
      ? {
          dpop: {
            required: true,
            ...(dpopNonces ? { nonces: dpopNonces } : {}),
            ...(dpopOptions.iatWindowSeconds !== undefined ? { iatWindowSeconds: dpopOptions.iatWindowSeconds } : {}),
          },
        }
      : {}),
    ...options.verifier,
  });
  const scheme = dpopOptions ? "DPoP" : "Bearer";
  const tokenOf = (authorization: string | null | undefined) => (dpopOptions ? dpopTokenOf(authorization) : bearerOf(authorization));

  /** A refusal of this server's own knobs (revoke, setRejectAll, setUnauthenticatedAfter). */
  const knobRefusal = (reason: RejectReason, message: string) =>
    new ConnectError(message, Code.Unauthenticated, verifier.challenge(scheme, { error: "invalid_token", error_description: reason }));

  /** Read what the client sends before refusing, so the raw body is recorded on HTTP/2 too. */
  const drain = async (req: Parameters<Parameters<Interceptor>[0]>[0]) => {
    if (!req.stream) return;
    const reading = (async () => {
      try {
        for await (const _ of req.message) {
          // recorded by the request tap
        }
      } catch {
        // the client went away
      }
    })();
    // Bounded: a bidi client may wait for an answer before it ends its stream.
    await Promise.race([reading, sleep(1000)]);
  };

  const recordRefusal = (record: MutableRecord | undefined, error: unknown) => {
    if (!record) return;
    const refusal = error instanceof ConnectError ? (error.cause as TokenRefusal | undefined) : undefined;
    record.auth = "rejected";
    if (refusal?.ok !== false) {
      record.reason ??= "invalid";
      if (dpopOptions) record.dpop ??= { ok: false, reason: "token" };
      return;
    }
    record.reason = rejectReasonOf(refusal);
    if (!dpopOptions) return;
    record.dpop = dpopRecordOf(refusal);
  };

  // Outside connect-oidc's interceptor: knobs first, then record what it decided.
  const recordingInterceptor: Interceptor = (next) => async (req) => {
    const record = req.contextValues.get(kRecord);
    if (requestDelayMs > 0) await sleep(requestDelayMs, undefined, { signal: req.signal });
    const token = tokenOf(req.header.get("authorization"));
    const knob = rejectAll
      ? knobRefusal("reject-all", "server refuses every token (setRejectAll)")
      : token !== undefined && revoked.has(hashToken(token))
        ? knobRefusal("revoked", "token revoked")
        : undefined;
    if (knob) {
      if (record) record.reason = rejectAll ? "reject-all" : "revoked";
      recordRefusal(record, knob);
      await drain(req);
      throw knob;
    }
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (error) {
      const verified = req.contextValues.get(verifiedTokenKey);
      if (verified === undefined) {
        recordRefusal(record, error);
        await drain(req);
      }
      throw error;
    }
    return res;
  };

  // Inside it: the call got through; record who it was.
  const acceptedInterceptor: Interceptor = (next) => async (req) => {
    const record = req.contextValues.get(kRecord);
    const verified = req.contextValues.get(verifiedTokenKey);
    if (record && verified) {
      record.auth = "accepted";
      record.subject = verified.subject ?? "";
      if (dpopOptions) {
        const nonce = proofNonceOf(req.header.get("dpop"));
        record.dpop = { ok: true, ...(verified.jkt === undefined ? {} : { jkt: verified.jkt }), ...(nonce === undefined ? {} : { nonce }) };
      }
    }
    return next(req);
  };
  const authOptions = options.methods ? { methods: options.methods } : {};
  const authInterceptor = createAuthServerInterceptor(verifier, authOptions);
  const subjectOf = (ctx: HandlerContext) => ctx.values.get(verifiedTokenKey)?.subject ?? "";

  const checkStream = (sent: number) => {
    if (unauthenticatedAfter !== undefined && sent >= unauthenticatedAfter) {
      throw knobRefusal("expired", "token no longer accepted (setUnauthenticatedAfter)");
    }
  };

  const routes = (router: ConnectRouter) => {
    router.service(EchoService, {
      say(req, ctx: HandlerContext) {
        return { text: req.text, payload: req.payload, subject: subjectOf(ctx) };
      },
      async *countdown(req, ctx: HandlerContext) {
        const subject = subjectOf(ctx);
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
          subject: subjectOf(ctx),
          count: texts.length,
        };
      },
      async *chat(reqs, ctx: HandlerContext) {
        const subject = subjectOf(ctx);
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
  const connectAdapter = connectNodeAdapter({
    routes,
    connect: true,
    grpc: true,
    grpcWeb: true,
    interceptors: [recordingInterceptor, authInterceptor, acceptedInterceptor],
    readMaxBytes: 64 * 1024 * 1024,
    writeMaxBytes: 64 * 1024 * 1024,
    contextValues: (req) => createContextValues().set(kRecord, recordsByRequest.get(req)),
  });
  const adapter = options.early ? withAuthentication(connectAdapter, verifier, authOptions) : connectAdapter;

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
      // HTTP/1.1: a request refused before its body was read ends with its connection. The
      // listener goes when the request ends: a kept-alive connection carries many requests.
      if (req.httpVersionMajor === 1) {
        const socket = req.socket;
        socket.once("close", resolve);
        req.once("close", () => socket.off("close", resolve));
      }
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
        testNonces?.rotate();
      },
      get currentNonce() {
        return dpopNonces?.current();
      },
    },
    close,
  };
}

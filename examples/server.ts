/**
 * An example AgentSessionService that only accepts OIDC access tokens it can verify, with
 * connect-oidc/server (`createTokenVerifier` + `createAuthServerInterceptor`): a JWT
 * (`typ: at+jwt`, RS256) signed by the issuer's keys (JWKS), for this audience, not
 * expired — with no clock tolerance, so an expired token is refused for real.
 *
 * With `--dpop` it accepts only DPoP-bound tokens (RFC 9449): `authorization: DPoP <token>`
 * and a `DPoP` proof for this very request, signed by the key the token is bound to
 * (`cnf.jkt`), fresh (`iat` within 60 s, `jti` never seen), carrying the server's current
 * nonce, which changes every time step (`--dpop-nonce-every`, default 30 s; derived from a
 * secret, see `createDPoPNonces`). A bearer token, a token with another key's proof or a
 * replayed proof is refused.
 *
 *   tsx examples/server.ts --issuer https://login.example.com --audience https://api.example.com [--port 8080] [--h2c] [--dpop]
 *
 * `startExampleServer(options)` starts the same server in-process (the demo does).
 */
import { createHash, randomUUID } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { pathToFileURL } from "node:url";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AgentSessionService, Decision, type IngestEventRequest } from "../gen/agent/v1/session_pb.js";
import { createAuthServerInterceptor, createDPoPNonces, createTokenVerifier, type TokenRefusal, verifiedTokenKey } from "../src/server.js";
import { parseCli, runMain } from "./lib/cli.js";
import { parseDuration } from "./lib/duration.js";

export interface ExampleServerOptions {
  /** The issuer the tokens must come from (`iss`). */
  readonly issuer: string;
  /** The audience the tokens must be for (`aud`): this API's resource identifier. */
  readonly audience: string;
  /** Default: `jwks_uri` from the issuer's discovery document. */
  readonly jwksUri?: string;
  /** true: HTTP/2 over cleartext (h2c); default HTTP/1.1. */
  readonly http2?: boolean;
  /** Default 0: any free port. */
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** The answer to an event; default: {@link defaultDecision}. */
  readonly decide?: (event: IngestEventRequest) => Decision;
  /**
   * Accept only DPoP-bound tokens with a valid proof (RFC 9449), nonces required, a new one
   * every `nonceRotateMs` (default 30 s, at least 1 s). Default: bearer tokens.
   */
  readonly dpop?: { readonly nonceRotateMs?: number };
}

/** `proof`: a DPoP proof missing or wrong; `nonce`: a proof without the current nonce. */
export type RejectReason = "missing" | "malformed" | "revoked" | "expired" | "invalid" | "proof" | "nonce";

export interface ExampleServerStats {
  /** Requests whose token (and DPoP proof, with `dpop`) was verified. */
  readonly accepted: number;
  /** Requests refused as Unauthenticated, by reason. */
  readonly rejected: Readonly<Record<RejectReason, number>>;
  readonly sessionsCreated: number;
  readonly sessionsEnded: number;
  readonly heartbeats: number;
  /** Distinct events stored. */
  readonly events: number;
  /** IngestEvent calls answered from a stored event (a retry of one already stored). */
  readonly duplicateEvents: number;
}

export interface ExampleServer {
  /** http://host:port */
  readonly url: string;
  readonly http2: boolean;
  readonly stats: ExampleServerStats;
  /**
   * Refuse this token from now on, valid signature or not: server-side revocation.
   * Only a hash of it is kept.
   */
  revoke(token: string): void;
  close(): Promise<void>;
}

interface Session {
  readonly subject: string;
  readonly agentName: string;
  lastHeartbeat: number;
  ended: boolean;
  /** client_event_id → the first answer, so a retried event gets the same one. */
  readonly events: Map<string, { readonly eventId: string; readonly decision: Decision }>;
}

/** Deny `rm -rf` in Bash, ask before fetching from the web, allow the rest. */
export function defaultDecision(event: IngestEventRequest): Decision {
  if (event.hookEventName !== "PreToolUse") return Decision.ALLOW;
  const input = new TextDecoder().decode(event.toolInputJson);
  if (event.toolName === "Bash" && /\brm\s+-[a-z]*r[a-z]*f|\brm\s+-[a-z]*f[a-z]*r/.test(input)) return Decision.DENY;
  if (event.toolName === "WebFetch") return Decision.ASK;
  return Decision.ALLOW;
}

/** A subject for every verified token (a client credentials token's is its client). */
const subjectOf = (ctx: HandlerContext) => {
  const token = ctx.values.get(verifiedTokenKey);
  return token?.subject ?? token?.clientId ?? "";
};

/** connect-oidc/server's refusal, in this server's counters. */
function rejectReasonOf(refusal: TokenRefusal): RejectReason {
  switch (refusal.reason) {
    case "missing":
    case "malformed":
    case "expired":
      return refusal.reason;
    default:
      return refusal.error === "use_dpop_nonce" ? "nonce" : refusal.error === "invalid_dpop_proof" ? "proof" : "invalid";
  }
}

const fingerprint = (token: string) => createHash("sha256").update(token).digest("base64url");

export async function startExampleServer(options: ExampleServerOptions): Promise<ExampleServer> {
  const { issuer, audience } = options;
  if (!issuer || !audience) throw new Error("startExampleServer: `issuer` and `audience` are required");
  const decide = options.decide ?? defaultDecision;

  const revoked = new Set<string>();
  const sessions = new Map<string, Session>();
  const stats = {
    accepted: 0,
    rejected: { missing: 0, malformed: 0, revoked: 0, expired: 0, invalid: 0, proof: 0, nonce: 0 } as Record<RejectReason, number>,
    sessionsCreated: 0,
    sessionsEnded: 0,
    heartbeats: 0,
    events: 0,
    duplicateEvents: 0,
  };

  const dpop = options.dpop;
  // connect-oidc/server does the checking; this server counts its verdicts.
  const verifier = createTokenVerifier({
    issuer,
    audience,
    ...(options.jwksUri ? { jwksUri: options.jwksUri } : {}),
    algorithms: ["RS256"],
    clockToleranceSeconds: 0,
    allowInsecureRequests: new URL(issuer).protocol === "http:",
    ...(dpop
      ? {
          dpop: {
            required: true,
            // Stateless nonces: every server given the same secret agrees (random here: one process).
            nonces: createDPoPNonces({ stepSeconds: (dpop.nonceRotateMs ?? 30_000) / 1000 }),
          },
        }
      : {}),
  });
  const scheme = dpop ? "DPoP" : "Bearer";

  const count: Interceptor = (next) => async (req) => {
    const token = /^(?:Bearer|DPoP) +(\S+)\s*$/i.exec(req.header.get("authorization") ?? "")?.[1];
    if (token !== undefined && revoked.has(fingerprint(token))) {
      stats.rejected.revoked++;
      throw new ConnectError(
        "token revoked",
        Code.Unauthenticated,
        verifier.challenge(scheme, { error: "invalid_token", error_description: "revoked" }),
      );
    }
    try {
      return await next(req);
    } catch (error) {
      const refusal = error instanceof ConnectError ? (error.cause as TokenRefusal | undefined) : undefined;
      if (refusal?.ok === false) stats.rejected[rejectReasonOf(refusal)]++;
      throw error;
    }
  };
  const accepted: Interceptor = (next) => (req) => {
    stats.accepted++;
    return next(req);
  };

  /** The caller's own open session, or the error that says why not. */
  const sessionOf = (sessionId: string, ctx: HandlerContext, allowEnded = false): Session => {
    const session = sessions.get(sessionId);
    // Someone else's session looks like no session: ids are not secrets, but they are not yours.
    if (!session || session.subject !== subjectOf(ctx)) {
      throw new ConnectError(`no session ${JSON.stringify(sessionId)}`, Code.NotFound);
    }
    if (session.ended && !allowEnded) throw new ConnectError("the session has ended", Code.FailedPrecondition);
    return session;
  };

  const routes = (router: ConnectRouter) => {
    router.service(AgentSessionService, {
      createSession(req, ctx) {
        const agentName = req.agentName.trim();
        if (agentName === "") throw new ConnectError("agent_name is required", Code.InvalidArgument);
        const sessionId = randomUUID();
        sessions.set(sessionId, {
          subject: subjectOf(ctx),
          agentName,
          lastHeartbeat: Date.now(),
          ended: false,
          events: new Map(),
        });
        stats.sessionsCreated++;
        return { sessionId };
      },
      heartbeat(req, ctx) {
        sessionOf(req.sessionId, ctx).lastHeartbeat = Date.now();
        stats.heartbeats++;
        return {};
      },
      ingestEvent(req, ctx) {
        const session = sessionOf(req.sessionId, ctx);
        if (req.clientEventId === "") throw new ConnectError("client_event_id is required", Code.InvalidArgument);
        if (req.hookEventName === "") throw new ConnectError("hook_event_name is required", Code.InvalidArgument);
        const seen = session.events.get(req.clientEventId);
        if (seen) {
          stats.duplicateEvents++;
          return seen;
        }
        const answer = { eventId: randomUUID(), decision: decide(req) };
        session.events.set(req.clientEventId, answer);
        stats.events++;
        return answer;
      },
      endSession(req, ctx) {
        const session = sessionOf(req.sessionId, ctx, true);
        if (!session.ended) {
          session.ended = true;
          stats.sessionsEnded++;
        }
        return {};
      },
    });
  };

  const adapter = connectNodeAdapter({ routes, interceptors: [count, createAuthServerInterceptor(verifier), accepted] });
  const server = options.http2 ? http2.createServer(adapter) : http.createServer(adapter);
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;

  let closed: Promise<void> | undefined;
  return {
    url: `http://${host}:${address.port}`,
    http2: options.http2 ?? false,
    stats,
    revoke(token) {
      revoked.add(fingerprint(token));
    },
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      })),
  };
}

async function main(): Promise<number> {
  const { values } = parseCli({
    command: "tsx examples/server.ts",
    description:
      "An example AgentSessionService that accepts only access tokens it can verify: JWTs signed by\n" +
      "the issuer's keys, for this audience, not expired (no clock tolerance). Ctrl-C stops it.",
    flags: {
      issuer: { type: "string", kind: "url", env: "OIDC_ISSUER", required: true, help: "the issuer the tokens must come from" },
      audience: {
        type: "string",
        value: "<api identifier>",
        env: "OIDC_AUDIENCE",
        required: true,
        help: "the audience the tokens must be for",
      },
      "jwks-uri": { type: "string", kind: "url", help: "the issuer's keys (default: jwks_uri from its discovery document)" },
      port: {
        type: "string",
        kind: "integer",
        min: 0,
        max: 65535,
        env: "PORT",
        default: "8080",
        help: "port to listen on (0: any free port)",
      },
      host: { type: "string", value: "<address>", default: "127.0.0.1", help: "address to listen on" },
      h2c: { type: "boolean", help: "HTTP/2 over cleartext instead of HTTP/1.1" },
      dpop: { type: "boolean", help: "accept only DPoP-bound tokens with a valid proof (RFC 9449), server nonces required" },
      "dpop-nonce-every": { type: "string", kind: "duration", default: "30s", help: "with --dpop: how often the nonce rotates" },
    },
    example: "tsx examples/server.ts --issuer https://login.example.com --audience https://api.example.com --port 8080",
  });
  const server = await startExampleServer({
    issuer: values.issuer,
    audience: values.audience,
    ...(values["jwks-uri"] ? { jwksUri: values["jwks-uri"] } : {}),
    port: Number(values.port),
    host: values.host,
    http2: values.h2c,
    ...(values.dpop ? { dpop: { nonceRotateMs: parseDuration(values["dpop-nonce-every"]) } } : {}),
  });
  process.stderr.write(
    `AgentSessionService listening on ${server.url} (${server.http2 ? "h2c" : "HTTP/1.1"}${values.dpop ? ", DPoP" : ""}); Ctrl-C stops it\n`,
  );
  // Runs until Ctrl-C.
  return new Promise<number>((resolve) => {
    process.once("SIGINT", () => {
      void server.close().then(() => resolve(0));
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runMain("server", main);

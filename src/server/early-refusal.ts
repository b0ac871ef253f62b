/**
 * withAuthentication: a Node request handler around `connectNodeAdapter` (or any handler)
 * that refuses a request without a valid access token before its body is read or parsed,
 * like connectrpc.com/authn for Go. The refusal is written in the request's protocol
 * (wire-error.ts). A request it lets through runs the handler with the verdict attached
 * (handoff.ts), so the server interceptor does not check the token a second time.
 * An HTTP/1.1 refusal of a request whose body is large or of unknown length closes the
 * connection instead of reading the body to keep it alive.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { refusalError } from "./errors.js";
import { earlyVerdicts } from "./handoff.js";
import type { AuthServerOptions } from "./interceptor.js";
import { createPolicy } from "./policy.js";
import type { TokenVerifier } from "./verifier.js";
import { protocolOf, wireResponseOf } from "./wire-error.js";

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

/**
 * A Node request handler, as `connectNodeAdapter` returns and `http.createServer` /
 * `http2.createServer` take.
 *
 * @example
 * ```ts
 * import type { NodeHandler } from "connect-oidc/server";
 *
 * const health: NodeHandler = (_req, res) => {
 *   res.writeHead(200);
 *   res.end();
 * };
 * ```
 */
export type NodeHandler<
  Req extends IncomingMessage | Http2ServerRequest = IncomingMessage | Http2ServerRequest,
  Res extends ServerResponse | Http2ServerResponse = ServerResponse | Http2ServerResponse,
> = (req: Req, res: Res) => void;

/** A refused HTTP/1.1 request body up to this size is read and dropped to keep the connection. */
const DRAIN_MAX_BYTES = 64 * 1024;

/** The URL as connect-node builds it for interceptors (`req.url`): a DPoP proof's `htu`. */
function urlOf(req: NodeRequest): string {
  const encrypted = "encrypted" in req.socket && req.socket.encrypted === true;
  const authority = "authority" in req ? req.authority : req.headers.host;
  return new URL(req.url ?? "/", `${encrypted ? "https" : "http"}://${authority ?? "localhost"}`).toString();
}

function headerOf(req: NodeRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

/**
 * Wrap a Node request handler so that a request without a valid access token (and DPoP
 * proof) is refused before its body is read: Connect answers HTTP 401 with a JSON error,
 * gRPC and gRPC-web a trailers-only `grpc-status: 16`, each with the `WWW-Authenticate`
 * challenge (and `DPoP-Nonce`). Use it together with {@link createAuthServerInterceptor}
 * (same verifier, same options): the wrapper authenticates, the interceptor checks each
 * method's scopes and hands the token to handlers, without verifying it again.
 *
 * @example
 * ```ts
 * import http2 from "node:http2";
 * import { connectNodeAdapter } from "@connectrpc/connect-node";
 * import type { ConnectRouter } from "@connectrpc/connect";
 * import { createAuthServerInterceptor, createTokenVerifier, withAuthentication } from "connect-oidc/server";
 *
 * declare const routes: (router: ConnectRouter) => void;
 * const verifier = createTokenVerifier({ issuer: "https://login.example.com", audience: "https://api.example.com" });
 * const options = { methods: { "agent.v1.AgentSessionService/IngestEvent": ["events:write"] } };
 * const adapter = connectNodeAdapter({ routes, interceptors: [createAuthServerInterceptor(verifier, options)] });
 * http2.createServer(withAuthentication(adapter, verifier, options)).listen(8443);
 * ```
 */
export function withAuthentication<Req extends IncomingMessage | Http2ServerRequest, Res extends ServerResponse | Http2ServerResponse>(
  handler: NodeHandler<Req, Res>,
  verifier: TokenVerifier,
  options: AuthServerOptions = {},
): NodeHandler<Req, Res> {
  const policy = createPolicy(options.methods);
  return (req, res) => {
    if (policy.isPublicPath(req.url ?? "")) {
      handler(req, res);
      return;
    }
    const authorization = headerOf(req, "authorization");
    verifier
      .verify({ authorization, dpop: headerOf(req, "dpop"), method: req.method ?? "", url: urlOf(req) })
      .then((result) => {
        if (result.ok) {
          earlyVerdicts.run({ authorization: authorization ?? "", token: result }, () => handler(req, res));
          return;
        }
        refuse(req, res, refusalError(result));
      })
      .catch(() => {
        // verify() answers refusals instead of throwing; this is a bug in a custom part (e.g. a replay cache).
        if (!res.headersSent) {
          res.writeHead(500);
          res.end();
        }
      });
  };
}

function refuse(req: NodeRequest, res: NodeResponse, error: ReturnType<typeof refusalError>): void {
  const contentType = headerOf(req, "content-type");
  const wire = wireResponseOf(protocolOf(contentType), contentType, error);
  const headers = { ...wire.headers };
  const declared = headerOf(req, "content-length");
  const hasBody = declared !== undefined || headerOf(req, "transfer-encoding") !== undefined;
  if (req.httpVersionMajor === 1 && hasBody && !req.readableEnded) {
    // Unknown or large: close rather than read it (Node would read and drop it to keep the connection).
    if (!(Number(declared ?? Number.NaN) <= DRAIN_MAX_BYTES)) headers.connection = "close";
  }
  if (req.httpVersionMajor === 2 && !wire.body) {
    // A trailers-only answer (gRPC, gRPC-web) must be one HEADERS frame with END_STREAM:
    // writeHead + end() sends the headers open and then resets the stream, which grpc-js
    // reports as INTERNAL instead of the status the headers carry.
    (res as Http2ServerResponse).stream.respond({ ":status": wire.status, ...headers }, { endStream: true });
    return;
  }
  (res as ServerResponse).writeHead(wire.status, headers);
  if (wire.body) res.end(wire.body);
  else res.end();
}

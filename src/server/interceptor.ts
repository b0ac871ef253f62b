/**
 * The server interceptor: verifies each call's access token (or takes the verdict of the
 * Node request wrapper for this request), checks the method's requirements, hands the
 * verified token to handlers as a context value, and answers a refusal with its challenge.
 * Works with every Connect server adapter (Node, fastify, express, Next.js).
 */
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import { refusalError, shortfallError } from "./errors.js";
import { earlyVerdicts } from "./handoff.js";
import { createPolicy, type MethodRequirements, shortfallOf } from "./policy.js";
import type { VerifiedToken } from "./types.js";
import type { TokenVerifier } from "./verifier.js";

/**
 * The verified access token of the call, for handlers: `ctx.values.get(verifiedTokenKey)`.
 * undefined on a public method.
 *
 * @example
 * ```ts
 * import type { HandlerContext } from "@connectrpc/connect";
 * import { verifiedTokenKey } from "connect-oidc/server";
 *
 * function whoCalls(ctx: HandlerContext): string {
 *   return ctx.values.get(verifiedTokenKey)?.subject ?? "anonymous";
 * }
 * ```
 */
export const verifiedTokenKey = createContextKey<VerifiedToken | undefined>(undefined, {
  description: "connect-oidc verified access token",
});

/**
 * Options of {@link createAuthServerInterceptor} and {@link withAuthentication}.
 *
 * @example
 * ```ts
 * import type { AuthServerOptions } from "connect-oidc/server";
 *
 * const options: AuthServerOptions = {
 *   methods: {
 *     "agent.v1.AgentSessionService/IngestEvent": ["events:write"],
 *     "agent.v1.AgentSessionService/EndSession": { scopes: ["sessions:write"], acr: ["urn:example:mfa"] },
 *     "grpc.health.v1.Health": { public: true },
 *   },
 * };
 * ```
 */
export interface AuthServerOptions {
  /** What each method requires (see {@link MethodRequirements}). Default: a valid token, nothing more. */
  readonly methods?: MethodRequirements;
  /** Wall clock, epoch ms, for `max_age`. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * A Connect server interceptor that lets a call through only with a valid access token
 * that has what its method requires. Refusals: `Code.Unauthenticated` with a
 * `WWW-Authenticate` challenge for a token problem (RFC 6750 `invalid_token`, RFC 9449
 * `invalid_dpop_proof` / `use_dpop_nonce` with `DPoP-Nonce`) and for a step-up (RFC 9470
 * `insufficient_user_authentication` with `acr_values` / `max_age`); `Code.PermissionDenied`
 * with `insufficient_scope` and `scope=` for a missing scope; `Code.Unavailable` when the
 * issuer's keys cannot be had. Handlers read the token from {@link verifiedTokenKey}.
 *
 * @example
 * ```ts
 * import http from "node:http";
 * import { connectNodeAdapter } from "@connectrpc/connect-node";
 * import type { ConnectRouter } from "@connectrpc/connect";
 * import { createAuthServerInterceptor, createTokenVerifier } from "connect-oidc/server";
 *
 * declare const routes: (router: ConnectRouter) => void;
 * const verifier = createTokenVerifier({ issuer: "https://login.example.com", audience: "https://api.example.com" });
 * const auth = createAuthServerInterceptor(verifier, { methods: { "agent.v1.AgentSessionService/IngestEvent": ["events:write"] } });
 * http.createServer(connectNodeAdapter({ routes, interceptors: [auth] })).listen(8080);
 * ```
 */
export function createAuthServerInterceptor(verifier: TokenVerifier, options: AuthServerOptions = {}): Interceptor {
  const policy = createPolicy(options.methods);
  const now = options.now ?? Date.now;
  return (next) => async (req) => {
    const requirement = policy.requirementOf(req.service.typeName, req.method.name);
    if (requirement.public) return next(req);
    const authorization = req.header.get("authorization");
    const early = earlyVerdicts.getStore();
    const result =
      early !== undefined && early.authorization === authorization
        ? early.token
        : await verifier.verify({ authorization, dpop: req.header.get("dpop"), method: req.requestMethod, url: req.url });
    if (!result.ok) throw refusalError(result);
    const shortfall = shortfallOf(result, requirement, now() / 1000);
    if (shortfall) throw shortfallError(verifier, result.scheme, shortfall);
    req.contextValues.set(verifiedTokenKey, result);
    const res = await next(req);
    const nonce = result.scheme === "DPoP" ? verifier.dpopNonce() : undefined;
    if (nonce !== undefined) res.header.set("dpop-nonce", nonce);
    return res;
  };
}

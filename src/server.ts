/**
 * Node-only: the resource server's side. Verify the access tokens (bearer or DPoP-bound)
 * that connect-oidc clients — or any OAuth client — send to a Connect server: a token
 * verifier (RFC 9068 JWTs with jose, RFC 7662 introspection through openid-client, RFC 9449
 * DPoP proofs with server nonces and a replay cache), a server interceptor that checks each
 * method's scopes and answers with the right challenge, and a Node request wrapper that
 * refuses an unauthenticated request before reading its body. What it guarantees and what it
 * leaves to you: SECURITY.md.
 *
 * @example
 * ```ts
 * import http from "node:http";
 * import type { ConnectRouter } from "@connectrpc/connect";
 * import { connectNodeAdapter } from "@connectrpc/connect-node";
 * import { createAuthServerInterceptor, createTokenVerifier, verifiedTokenKey, withAuthentication } from "connect-oidc/server";
 *
 * const verifier = createTokenVerifier({ issuer: "https://login.example.com", audience: "https://api.example.com" });
 * const options = { methods: { "agent.v1.AgentSessionService/IngestEvent": ["events:write"] } };
 * declare const routes: (router: ConnectRouter) => void; // handlers read ctx.values.get(verifiedTokenKey)
 * const adapter = connectNodeAdapter({ routes, interceptors: [createAuthServerInterceptor(verifier, options)] });
 * http.createServer(withAuthentication(adapter, verifier, options)).listen(8080);
 * ```
 *
 * @module connect-oidc/server
 */
export { createTokenVerifier, type TokenVerifier } from "./server/verifier.js";
export type { DPoPVerifierOptions, IntrospectionOptions, TokenVerifierOptions } from "./server/options.js";
export { createAuthServerInterceptor, verifiedTokenKey, type AuthServerOptions } from "./server/interceptor.js";
export { withAuthentication, type NodeHandler } from "./server/early-refusal.js";
export type { MethodRequirement, MethodRequirements } from "./server/policy.js";
export { refusalError } from "./server/errors.js";
export { createDPoPNonces, type DPoPNoncesOptions } from "./server/nonces.js";
export { memoryReplayCache, type MemoryReplayCacheOptions } from "./server/replay-memory.js";
export { redisReplayCache, type RedisReplayCacheOptions } from "./server/replay-redis.js";
export type { ChallengeParams } from "./server/challenge.js";
export type {
  AccessTokenClaims,
  ChallengeError,
  DPoPNonces,
  DPoPRefusalReason,
  ReplayCache,
  TokenRefusal,
  TokenRefusalReason,
  TokenScheme,
  VerifiedToken,
  VerifyRequest,
  VerifyResult,
} from "./server/types.js";

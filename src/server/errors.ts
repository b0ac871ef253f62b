/**
 * Refusals as Connect errors: a token problem is `Code.Unauthenticated` (HTTP 401, the
 * client refreshes and retries once), a missing scope `Code.PermissionDenied` (HTTP 403, RFC
 * 6750 §3.1: a new token of the same grant would not help, so no refresh loop), a step-up
 * `Code.Unauthenticated` (RFC 9470 §3 answers 401), an unreachable issuer `Code.Unavailable`.
 * The challenge and the DPoP nonce travel in the error's metadata (response headers, or gRPC
 * trailers); the refusal (no token material) is the error's `cause`.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { PolicyShortfall } from "./policy.js";
import type { TokenRefusal, TokenScheme } from "./types.js";
import type { TokenVerifier } from "./verifier.js";

/**
 * The Connect error for a refusal of {@link TokenVerifier.verify}: throw it from your own
 * interceptor or handler.
 *
 * @example
 * ```ts
 * import type { Interceptor } from "@connectrpc/connect";
 * import { createTokenVerifier, refusalError } from "connect-oidc/server";
 *
 * const verifier = createTokenVerifier({ issuer: "https://login.example.com", audience: "https://api.example.com" });
 * const mine: Interceptor = (next) => async (req) => {
 *   const result = await verifier.verify({ authorization: req.header.get("authorization"), method: req.requestMethod, url: req.url });
 *   if (!result.ok) throw refusalError(result);
 *   return next(req);
 * };
 * ```
 */
export function refusalError(refusal: TokenRefusal): ConnectError {
  if (refusal.reason === "unavailable") {
    return new ConnectError(
      "the access token cannot be verified now: the issuer's keys, its introspection endpoint or the replay cache did not answer",
      Code.Unavailable,
      refusal.headers,
      undefined,
      refusal,
    );
  }
  const message = refusal.reason === "missing" ? "no access token" : `access token refused: ${refusal.reason}`;
  return new ConnectError(message, Code.Unauthenticated, refusal.headers, undefined, refusal);
}

/** The Connect error for a verified token that lacks what the method requires. */
export function shortfallError(verifier: TokenVerifier, scheme: TokenScheme, shortfall: PolicyShortfall): ConnectError {
  if (shortfall.kind === "scope") {
    const scope = shortfall.scopes.join(" ");
    return new ConnectError(
      `the access token lacks a scope this method requires (${scope})`,
      Code.PermissionDenied,
      verifier.challenge(scheme, { error: "insufficient_scope", scope }),
    );
  }
  const acrValues = shortfall.acr?.join(" ");
  return new ConnectError(
    "this method requires a stronger or more recent authentication: log in again" +
      (acrValues === undefined ? "" : ` with acr_values=${acrValues}`) +
      (shortfall.maxAgeSeconds === undefined ? "" : ` and max_age=${shortfall.maxAgeSeconds}`),
    Code.Unauthenticated,
    verifier.challenge(scheme, {
      error: "insufficient_user_authentication",
      error_description: "step-up",
      acr_values: acrValues,
      max_age: shortfall.maxAgeSeconds,
    }),
  );
}

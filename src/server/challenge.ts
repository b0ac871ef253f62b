/**
 * `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9449 §7.1, RFC 9470 §3): one scheme,
 * its auth-params as quoted strings. Values never hold token material: the `error_description`
 * is a refusal reason from a fixed list.
 */
import type { ChallengeError, TokenScheme } from "./types.js";

/**
 * The auth-params of a challenge, in the order they are written.
 *
 * @example
 * ```ts
 * import { createTokenVerifier } from "connect-oidc/server";
 *
 * const verifier = createTokenVerifier({ issuer: "https://login.example.com", audience: "https://api.example.com" });
 * // { "www-authenticate": 'Bearer error="insufficient_scope", scope="admin"' }
 * const headers = verifier.challenge("Bearer", { error: "insufficient_scope", scope: "admin" });
 * ```
 */
export interface ChallengeParams {
  readonly realm?: string | undefined;
  readonly error?: ChallengeError | undefined;
  readonly error_description?: string | undefined;
  /** insufficient_scope: the scopes the method needs (RFC 6750 §3). */
  readonly scope?: string | undefined;
  /** insufficient_user_authentication: acceptable `acr` values (RFC 9470 §3). */
  readonly acr_values?: string | undefined;
  /** insufficient_user_authentication: the authentication's maximum age in seconds. */
  readonly max_age?: number | undefined;
}

const ORDER = ["realm", "error", "error_description", "scope", "acr_values", "max_age"] as const;

/** `Bearer error="invalid_token", error_description="expired"`; a bare `Bearer` without params. */
export function formatChallenge(scheme: TokenScheme, params: ChallengeParams): string {
  const parts: string[] = [];
  for (const name of ORDER) {
    const value = params[name];
    if (value === undefined) continue;
    parts.push(`${name}="${String(value).replace(/[\\"]/g, "\\$&")}"`);
  }
  return parts.length === 0 ? scheme : `${scheme} ${parts.join(", ")}`;
}

/**
 * Sign-out's revocation (RFC 7009): which tokens of a login to revoke (refresh tokens
 * first: revoking one ends the login at the provider; then access tokens), whether to ask
 * at all, and what `signOut()` reports. The store is cleared by the runner (machine.ts)
 * whatever this says: a failed revocation never keeps a login the user signed out of.
 */
import { RevocationError } from "../errors.js";
import { describeFailure } from "../failure.js";
import type { OidcAdapter, RevocableToken } from "../oidc.js";
import type { StoredTokens } from "../types.js";

/**
 * Options of `tokens.signOut()`.
 *
 * @example
 * ```ts
 * await tokens.signOut(); // revoke when the provider offers it, then clear the store
 * await tokens.signOut({ revoke: false }); // clear the store only
 * ```
 */
export interface SignOutOptions {
  /**
   * Revoke the login at the identity provider (RFC 7009) before clearing the store.
   * Default: when the provider lists a `revocation_endpoint`. `false`: clear the store only
   * (the provider keeps the login until it expires). `true`: a provider without the
   * endpoint is reported as an error (`RevocationError` "unsupported").
   */
  readonly revoke?: boolean;
}

/**
 * What `signOut()` did besides clearing the store (which it always does).
 *
 * @example
 * ```ts
 * const { revoked, error } = await tokens.signOut();
 * console.error(revoked ? "Signed out (revoked at the provider)." : "Signed out on this machine.");
 * if (error !== undefined) console.error(error.message); // a RevocationError, never a token
 * ```
 */
export interface SignOutResult {
  /** The identity provider revoked the login's tokens. */
  readonly revoked: boolean;
  /** Why revocation, asked for (or due by default), did not happen. */
  readonly error?: RevocationError;
}

/** The distinct tokens of these logins, refresh tokens first. */
export function revocableTokens(logins: readonly (StoredTokens | undefined)[]): RevocableToken[] {
  const refresh = new Set<string>();
  const access = new Set<string>();
  for (const login of logins) {
    if (login?.refreshToken !== undefined) refresh.add(login.refreshToken);
    if (login?.accessToken !== undefined) access.add(login.accessToken);
  }
  return [
    ...[...refresh].map((token) => ({ token, hint: "refresh_token" as const })),
    ...[...access].map((token) => ({ token, hint: "access_token" as const })),
  ];
}

/** Revoke the tokens of these logins as `revoke` asks; never rejects. */
export async function revokeLogins(
  oidc: Pick<OidcAdapter, "revoke">,
  logins: readonly (StoredTokens | undefined)[],
  revoke: boolean | undefined,
): Promise<SignOutResult> {
  const tokens = revocableTokens(logins);
  if (revoke === false || tokens.length === 0) return { revoked: false };
  if (oidc.revoke === undefined) return { revoked: false };
  const result = await oidc.revoke(tokens);
  if (result.ok) return { revoked: true };
  if (result.unsupported) {
    if (revoke !== true) return { revoked: false };
    return {
      revoked: false,
      error: new RevocationError(
        "unsupported",
        "Signed out on this machine, but the identity provider offers no token revocation (no revocation_endpoint): the login lasts there until it expires",
      ),
    };
  }
  return {
    revoked: false,
    error: new RevocationError(
      "failed",
      `Signed out on this machine, but revoking the login at the identity provider failed (${describeFailure(result.error)}): it may last there until it expires`,
      { cause: result.error },
    ),
  };
}

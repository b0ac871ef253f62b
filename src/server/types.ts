/**
 * The public shapes of connect-oidc/server: what a verifier is asked, what it answers
 * (a verified token or a refusal with its challenge), and the pluggable parts (nonces,
 * replay cache). No code: the verifier lives in verifier.ts.
 */

/**
 * The authorization scheme a token came with (RFC 6750 `Bearer`, RFC 9449 `DPoP`).
 *
 * @example
 * ```ts
 * import type { TokenScheme, VerifiedToken } from "connect-oidc/server";
 *
 * const isSenderConstrained = (token: VerifiedToken): boolean => token.scheme === ("DPoP" satisfies TokenScheme);
 * ```
 */
export type TokenScheme = "Bearer" | "DPoP";

/**
 * What the verifier needs of one HTTP request. Connect's server interceptors and the Node
 * request wrapper fill it in for you; call {@link TokenVerifier.verify} yourself elsewhere.
 *
 * @example
 * ```ts
 * import type { IncomingMessage } from "node:http";
 * import type { VerifyRequest } from "connect-oidc/server";
 *
 * const requestOf = (req: IncomingMessage): VerifyRequest => ({
 *   authorization: req.headers.authorization,
 *   dpop: req.headers.dpop as string | undefined,
 *   method: req.method ?? "GET",
 *   url: `https://${req.headers.host}${req.url}`,
 * });
 * ```
 */
export interface VerifyRequest {
  /** The `authorization` request header (null or undefined: none sent). */
  readonly authorization: string | null | undefined;
  /** The `DPoP` request header (Node joins repeated headers with ", "). */
  readonly dpop?: string | null | undefined;
  /** The HTTP method (`POST`, or `GET` for Connect GET requests): a proof's `htm`. */
  readonly method: string;
  /** The request URL as the client addressed it: a proof's `htu` (query and fragment ignored). */
  readonly url: string;
}

/**
 * The claims of a verified access token (RFC 9068 §2.2 for JWTs, RFC 7662 §2.2 for
 * introspection), as they came: the named ones typed, any other kept.
 *
 * @example
 * ```ts
 * import type { AccessTokenClaims } from "connect-oidc/server";
 *
 * const tenantOf = (claims: AccessTokenClaims): string | undefined =>
 *   typeof claims["https://example.com/tenant"] === "string" ? (claims["https://example.com/tenant"] as string) : undefined;
 * ```
 */
export interface AccessTokenClaims {
  readonly iss?: string;
  readonly sub?: string;
  readonly aud?: string | readonly string[];
  readonly exp?: number;
  readonly iat?: number;
  readonly nbf?: number;
  readonly jti?: string;
  readonly client_id?: string;
  readonly scope?: string;
  /** Authentication context class reference (RFC 9470 step-up checks it). */
  readonly acr?: string;
  /** When the user authenticated, epoch seconds (RFC 9470 `max_age` checks it). */
  readonly auth_time?: number;
  /** Confirmation: `jkt` binds the token to a DPoP key (RFC 9449 §6). */
  readonly cnf?: { readonly jkt?: string; readonly [member: string]: unknown };
  readonly [claim: string]: unknown;
}

/**
 * An access token that passed every check; handlers read it from {@link verifiedTokenKey}.
 *
 * @example
 * ```ts
 * import type { HandlerContext } from "@connectrpc/connect";
 * import { verifiedTokenKey } from "connect-oidc/server";
 *
 * function canWrite(ctx: HandlerContext): boolean {
 *   const token = ctx.values.get(verifiedTokenKey);
 *   return token !== undefined && token.scopes.has("events:write");
 * }
 * ```
 */
export interface VerifiedToken {
  readonly ok: true;
  readonly scheme: TokenScheme;
  /** "jwt": checked locally against the issuer's keys; "introspection": answered by the issuer (RFC 7662). */
  readonly format: "jwt" | "introspection";
  readonly claims: AccessTokenClaims;
  /** `sub`, when the token has one. */
  readonly subject: string | undefined;
  /** `client_id`, when the token has one. */
  readonly clientId: string | undefined;
  /** The granted scopes (`scope`, space-separated, or an `scp` array). */
  readonly scopes: ReadonlySet<string>;
  /** `exp` in epoch seconds, when the token has one. */
  readonly expiresAt: number | undefined;
  /** DPoP only: the RFC 7638 thumbprint of the key the token is bound to, and that signed the proof. */
  readonly jkt: string | undefined;
}

/**
 * The `error` of a `WWW-Authenticate` challenge: RFC 6750 §3.1 (`invalid_request`,
 * `invalid_token`, `insufficient_scope`), RFC 9449 §7.1 (`invalid_dpop_proof`,
 * `use_dpop_nonce`), RFC 9470 §3 (`insufficient_user_authentication`).
 *
 * @example
 * ```ts
 * import type { ChallengeError, TokenRefusal } from "connect-oidc/server";
 *
 * const onlyNeedsNonce = (refusal: TokenRefusal): boolean => refusal.error === ("use_dpop_nonce" satisfies ChallengeError);
 * ```
 */
export type ChallengeError =
  | "invalid_request"
  | "invalid_token"
  | "insufficient_scope"
  | "invalid_dpop_proof"
  | "use_dpop_nonce"
  | "insufficient_user_authentication";

/**
 * Why a DPoP proof was refused (RFC 9449 §4.3).
 *
 * @example
 * ```ts
 * import type { DPoPRefusalReason } from "connect-oidc/server";
 *
 * const theftLike: readonly DPoPRefusalReason[] = ["jkt-mismatch", "jti-replayed", "htu-mismatch"];
 * ```
 */
export type DPoPRefusalReason =
  | "missing-proof"
  | "multiple-proofs"
  | "malformed-proof"
  | "bad-alg"
  | "wrong-typ"
  | "bad-signature"
  | "htm-mismatch"
  | "htu-mismatch"
  | "iat-outside-window"
  | "ath-mismatch"
  | "token-not-bound"
  | "jkt-mismatch"
  | "jti-replayed"
  | "nonce-missing"
  | "nonce-stale";

/**
 * Why a token was refused. Sent as the challenge's `error_description`: stable, short, and
 * never token material.
 * - `missing`: no `authorization` header (the challenge then has no `error`, RFC 6750 §3.1);
 * - `malformed`: not `Bearer <token>` / `DPoP <token>` as this server accepts it;
 * - `expired`, `not-yet-valid`, `wrong-issuer`, `wrong-audience`, `wrong-typ`, `bad-alg`,
 *   `bad-signature`, `unknown-key`, `invalid`: the JWT's checks;
 * - `inactive`: introspection says the token is not active; `opaque`: not a JWT and no
 *   introspection configured;
 * - `bound-token-as-bearer`: a DPoP-bound token (`cnf.jkt`) sent as a bearer token;
 * - `dpop-required`: a bearer token where this server requires DPoP;
 * - `unavailable`: the issuer's keys, its introspection endpoint or the replay cache could
 *   not be reached — not the token's fault (the interceptor answers `Code.Unavailable`);
 * - a {@link DPoPRefusalReason}.
 *
 * @example
 * ```ts
 * import type { TokenRefusalReason } from "connect-oidc/server";
 *
 * const refusals = new Map<TokenRefusalReason, number>();
 * const count = (reason: TokenRefusalReason) => refusals.set(reason, (refusals.get(reason) ?? 0) + 1);
 * ```
 */
export type TokenRefusalReason =
  | "missing"
  | "malformed"
  | "expired"
  | "not-yet-valid"
  | "wrong-issuer"
  | "wrong-audience"
  | "wrong-typ"
  | "bad-alg"
  | "bad-signature"
  | "unknown-key"
  | "invalid"
  | "inactive"
  | "opaque"
  | "bound-token-as-bearer"
  | "dpop-required"
  | "unavailable"
  | DPoPRefusalReason;

/**
 * A request the verifier refused, with the response headers that say why.
 *
 * @example
 * ```ts
 * import type { ServerResponse } from "node:http";
 * import type { TokenRefusal } from "connect-oidc/server";
 *
 * function refuse(res: ServerResponse, refusal: TokenRefusal): void {
 *   res.writeHead(refusal.reason === "unavailable" ? 503 : 401, refusal.headers);
 *   res.end();
 * }
 * ```
 */
export interface TokenRefusal {
  readonly ok: false;
  /** The challenge's `error`; undefined for `missing` (RFC 6750 §3.1) and `unavailable`. */
  readonly error: ChallengeError | undefined;
  readonly reason: TokenRefusalReason;
  /** The scheme the challenge names. */
  readonly scheme: TokenScheme;
  /**
   * Response headers: `www-authenticate` (none for `unavailable`) and, on a server with DPoP
   * nonces, `dpop-nonce`.
   */
  readonly headers: Readonly<Record<string, string>>;
  /** DPoP: the proof key's thumbprint, once the proof's signature checked out. */
  readonly jkt?: string;
  /** DPoP: the nonce the proof carried. */
  readonly proofNonce?: string;
}

/**
 * What {@link TokenVerifier.verify} answers: `ok` tells which.
 *
 * @example
 * ```ts
 * import type { VerifyResult } from "connect-oidc/server";
 *
 * const who = (result: VerifyResult): string => (result.ok ? (result.subject ?? "a client") : `refused: ${result.reason}`);
 * ```
 */
export type VerifyResult = VerifiedToken | TokenRefusal;

/**
 * DPoP server nonces (RFC 9449 §8): {@link createDPoPNonces} derives them from a shared
 * secret so that a fleet agrees without storage; any object of this shape works.
 *
 * @example
 * ```ts
 * import type { DPoPNonces } from "connect-oidc/server";
 *
 * // One fixed nonce (tests only: a real one must change over time).
 * const fixed: DPoPNonces = { current: () => "n-1", accepts: (nonce) => nonce === "n-1" };
 * ```
 */
export interface DPoPNonces {
  /** The nonce to hand out now. */
  current(): string;
  /** Whether a proof's nonce is fresh enough. */
  accepts(nonce: string): boolean;
}

/**
 * Remembers DPoP proof `jti`s so a proof is accepted once (RFC 9449 §11.1):
 * {@link memoryReplayCache} for one process, {@link redisReplayCache} for a fleet.
 *
 * @example
 * ```ts
 * import type { ReplayCache } from "connect-oidc/server";
 *
 * // Unbounded, never forgets: a sketch of the contract, not for production.
 * const seen = new Set<string>();
 * const naive: ReplayCache = { use: (key) => !seen.has(key) && Boolean(seen.add(key)) };
 * ```
 */
export interface ReplayCache {
  /**
   * Record `key`, to be remembered for `ttlSeconds`; true when it was not there yet (first use),
   * false for a replay. A failure (thrown or rejected) refuses the request as `unavailable`.
   */
  use(key: string, ttlSeconds: number): boolean | Promise<boolean>;
}

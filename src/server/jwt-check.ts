/**
 * The check of a JWT access token (RFC 9068 §4) with jose: signature with the issuer's keys
 * (a remote JWKS, cached; an unknown `kid` fetches the set again after a cooldown, so a
 * rotated key is picked up), an allowed asymmetric `alg` (never `none` or HMAC), `typ: at+jwt`
 * when required, `iss`, `aud`, `exp` (required) and `nbf` with a small leeway.
 * The key set's URI comes from the options or, on the first check, the issuer's discovery.
 */
import type { JWTVerifyGetKey } from "jose";
import { type Jose, loadJose } from "./jose.js";
import type { AccessTokenClaims, TokenRefusalReason } from "./types.js";

export interface JwtCheckerOptions {
  readonly issuer: string;
  readonly audience: readonly string[];
  readonly jwksUri: string | undefined;
  readonly algorithms: readonly string[];
  readonly requireTyp: boolean;
  readonly clockToleranceSeconds: number;
  readonly cooldownSeconds: number;
  readonly maxAgeSeconds: number;
  readonly timeoutMs: number;
  /** Wall clock, epoch ms; undefined: jose's own (Date.now). */
  readonly now: (() => number) | undefined;
}

export type JwtResult =
  | { readonly ok: true; readonly claims: AccessTokenClaims }
  | { readonly ok: false; readonly reason: TokenRefusalReason };

export interface JwtChecker {
  check(token: string): Promise<JwtResult>;
}

/** What a jose error says about the token (or, for key set failures, about the issuer). */
function reasonOf({ errors }: Jose, error: unknown): TokenRefusalReason {
  if (error instanceof errors.JWTExpired) return "expired";
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case "iss":
        return "wrong-issuer";
      case "aud":
        return "wrong-audience";
      case "nbf":
        return "not-yet-valid";
      case "typ":
        return "wrong-typ";
      default:
        return "invalid";
    }
  }
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) return "bad-alg";
  if (error instanceof errors.JWSSignatureVerificationFailed) return "bad-signature";
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) return "unknown-key";
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) return "unavailable";
  if (error instanceof errors.JOSEError) return "invalid";
  // fetch failed, a discovery problem: the issuer, not the token.
  return "unavailable";
}

async function discoverJwksUri(issuer: string, timeoutMs: number): Promise<string> {
  const base = issuer.replace(/\/$/, "");
  for (const path of ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]) {
    const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs), redirect: "error" });
    if (res.status === 404) continue;
    if (!res.ok) throw new Error(`discovery of ${issuer} answered HTTP ${res.status}`);
    const metadata = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
    if (metadata.issuer !== issuer) throw new Error(`discovery of ${issuer} names another issuer`);
    if (typeof metadata.jwks_uri !== "string" || !URL.canParse(metadata.jwks_uri))
      throw new Error(`discovery of ${issuer} has no jwks_uri`);
    // Keys only over https, unless the issuer itself is plain http (allowed for tests only).
    if (new URL(metadata.jwks_uri).protocol !== "https:" && new URL(issuer).protocol === "https:") {
      throw new Error(`discovery of ${issuer} names a jwks_uri that is not https`);
    }
    return metadata.jwks_uri;
  }
  throw new Error(`no discovery document at ${issuer}`);
}

export function createJwtChecker(options: JwtCheckerOptions): JwtChecker {
  const jwksOptions = {
    cooldownDuration: options.cooldownSeconds * 1000,
    cacheMaxAge: options.maxAgeSeconds * 1000,
    timeoutDuration: options.timeoutMs,
  };
  let jose: Jose | undefined;
  let keys: JWTVerifyGetKey | undefined;
  // One discovery (and jose's load) at a time; a failed one is tried again on the next check.
  let discovering: Promise<JWTVerifyGetKey> | undefined;
  const keySet = (): Promise<JWTVerifyGetKey> => {
    discovering ??= Promise.all([loadJose(), options.jwksUri ?? discoverJwksUri(options.issuer, options.timeoutMs)])
      .then(([lib, uri]) => {
        jose = lib;
        keys = lib.createRemoteJWKSet(new URL(uri), jwksOptions);
        return keys;
      })
      .finally(() => {
        discovering = undefined;
      });
    return discovering;
  };

  const verifyOptions = {
    issuer: options.issuer,
    audience: [...options.audience],
    algorithms: [...options.algorithms],
    clockTolerance: options.clockToleranceSeconds,
    requiredClaims: ["exp"],
    ...(options.requireTyp ? { typ: "at+jwt" } : {}),
  };
  const now = options.now;

  return {
    async check(token) {
      try {
        const getKey = keys ?? (await keySet());
        const { payload } = await (jose as Jose).jwtVerify(
          token,
          getKey,
          now ? { ...verifyOptions, currentDate: new Date(now()) } : verifyOptions,
        );
        return { ok: true, claims: payload as AccessTokenClaims };
      } catch (error) {
        return { ok: false, reason: jose ? reasonOf(jose, error) : "unavailable" };
      }
    },
  };
}

/**
 * Options of createTokenVerifier, with their defaults, and the check that they make sense
 * (a ConfigurationError that names the fix, at construction, not on the first request).
 */
import { ConfigurationError } from "../errors.js";
import type { DPoPNonces, ReplayCache } from "./types.js";

/** Asymmetric JWS algorithms: a verifier never accepts `none` or an HMAC (`HS*`) algorithm. */
export const ASYMMETRIC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;

/**
 * DPoP on a verifier (RFC 9449).
 *
 * @example
 * ```ts
 * import type { DPoPVerifierOptions } from "connect-oidc/server";
 *
 * const dpop: DPoPVerifierOptions = { required: true, iatWindowSeconds: 30, algorithms: ["ES256", "EdDSA"] };
 * ```
 */
export interface DPoPVerifierOptions {
  /**
   * true: only DPoP-bound tokens with a proof are accepted (a bearer token is refused with
   * `dpop-required`). Default false: bearer tokens without `cnf.jkt` are accepted too; a
   * DPoP-bound token is always refused as a bearer token.
   */
  readonly required?: boolean;
  /** Proof algorithms accepted (asymmetric only). Default: every asymmetric JWS algorithm. */
  readonly algorithms?: readonly string[];
  /** How far a proof's `iat` may be from now, either way, in seconds. Default 60. */
  readonly iatWindowSeconds?: number;
  /**
   * Require server nonces (RFC 9449 §8) from this source: {@link createDPoPNonces} (an HMAC of
   * a time step with a secret the fleet shares). Default: no nonces.
   */
  readonly nonces?: DPoPNonces;
  /**
   * Where proof `jti`s are remembered. Default: {@link memoryReplayCache} (one process; a fleet
   * behind a load balancer needs {@link redisReplayCache} or nonces per server).
   */
  readonly replayCache?: ReplayCache;
  /** Imported proof keys kept, by thumbprint (least recently used dropped). Default 1000. */
  readonly keyCacheSize?: number;
}

/**
 * RFC 7662 introspection of opaque (non-JWT) access tokens, through openid-client.
 *
 * @example
 * ```ts
 * import { createTokenVerifier } from "connect-oidc/server";
 *
 * const verifier = createTokenVerifier({
 *   issuer: "https://login.example.com",
 *   audience: "https://api.example.com",
 *   introspection: { clientId: "my-api", clientSecret: process.env.API_CLIENT_SECRET ?? "" },
 * });
 * ```
 */
export interface IntrospectionOptions {
  /** This resource server's client at the issuer. */
  readonly clientId: string;
  /** Its secret (client_secret_basic). */
  readonly clientSecret: string;
  /** Answers kept, by a hash of the token (least recently used dropped). Default 10000. */
  readonly cacheSize?: number;
  /** An active answer is kept until the token's `exp`, at most this long. Default 300. */
  readonly maxCacheSeconds?: number;
  /** An inactive answer is kept this long. Default 30. */
  readonly inactiveCacheSeconds?: number;
}

/**
 * Options of {@link createTokenVerifier}.
 *
 * @example
 * ```ts
 * import { createDPoPNonces, createTokenVerifier } from "connect-oidc/server";
 *
 * const verifier = createTokenVerifier({
 *   issuer: "https://login.example.com",
 *   audience: "https://api.example.com",
 *   dpop: { nonces: createDPoPNonces({ secret: process.env.DPOP_NONCE_SECRET ?? "" }) },
 * });
 * ```
 */
export interface TokenVerifierOptions {
  /** The issuer tokens must come from (`iss`), exactly. */
  readonly issuer: string;
  /** The audience (`aud`) tokens must be for: this API's resource identifier (any of a list). */
  readonly audience: string | readonly string[];
  /**
   * The issuer's keys. Default: `jwks_uri` from its discovery document (OpenID Connect, then
   * RFC 8414), fetched on the first verification.
   */
  readonly jwksUri?: string;
  /** Access token signature algorithms accepted (asymmetric only). Default: every asymmetric one. */
  readonly algorithms?: readonly string[];
  /**
   * Require the RFC 9068 header `typ: at+jwt`, which tells an access token from an ID token.
   * Default true; false for issuers that send plain `JWT` access tokens.
   */
  readonly requireTyp?: boolean;
  /** Leeway for `exp`, `nbf` (and `iat` of DPoP proofs), in seconds. Default 5. */
  readonly clockToleranceSeconds?: number;
  /**
   * Key set cache: a kid not in the set fetches it again, at most once per `cooldownSeconds`
   * (default 30); the set is fetched again after `maxAgeSeconds` (default 600).
   */
  readonly jwks?: { readonly cooldownSeconds?: number; readonly maxAgeSeconds?: number; readonly timeoutMs?: number };
  /** Accept DPoP-bound tokens (RFC 9449). Default: bearer tokens only. */
  readonly dpop?: DPoPVerifierOptions;
  /** Introspect tokens that are not JWTs (RFC 7662). Default: such tokens are refused (`opaque`). */
  readonly introspection?: IntrospectionOptions;
  /** `realm` of the challenges. Default: none. */
  readonly realm?: string;
  /** Allow an `http:` issuer (tests, loopback). Default false. */
  readonly allowInsecureRequests?: boolean;
  /** Wall clock, epoch ms. Default `Date.now`. */
  readonly now?: () => number;
}

export function checkVerifierOptions(options: TokenVerifierOptions): void {
  const fail = (message: string): never => {
    throw new ConfigurationError(`createTokenVerifier: ${message}`);
  };
  if (typeof options?.issuer !== "string" || !URL.canParse(options.issuer)) fail("`issuer` must be the issuer's URL");
  const issuer = new URL(options.issuer);
  if (issuer.protocol !== "https:" && !(issuer.protocol === "http:" && options.allowInsecureRequests)) {
    fail(`\`issuer\` must be https (got ${issuer.protocol}); set allowInsecureRequests for an http issuer in tests`);
  }
  const audiences = typeof options.audience === "string" ? [options.audience] : options.audience;
  if (!Array.isArray(audiences) || audiences.length === 0 || audiences.some((a) => typeof a !== "string" || a === "")) {
    fail("`audience` must be this API's identifier (a non-empty string or list of strings)");
  }
  if (options.jwksUri !== undefined) {
    if (!URL.canParse(options.jwksUri)) fail("`jwksUri` must be a URL");
    if (new URL(options.jwksUri).protocol !== "https:" && !options.allowInsecureRequests) {
      fail("`jwksUri` must be https; set allowInsecureRequests for an http key set in tests");
    }
  }
  checkAlgorithms("algorithms", options.algorithms, fail);
  checkAlgorithms("dpop.algorithms", options.dpop?.algorithms, fail);
  const window = options.dpop?.iatWindowSeconds;
  if (window !== undefined && !(window > 0 && window <= 3600)) fail("`dpop.iatWindowSeconds` must be between 0 and 3600");
  const leeway = options.clockToleranceSeconds;
  if (leeway !== undefined && !(leeway >= 0 && leeway <= 300)) fail("`clockToleranceSeconds` must be between 0 and 300");
  const introspection = options.introspection;
  if (introspection && (!introspection.clientId || !introspection.clientSecret)) {
    fail("`introspection` needs this resource server's `clientId` and `clientSecret` at the issuer");
  }
}

function checkAlgorithms(name: string, algorithms: readonly string[] | undefined, fail: (message: string) => never): void {
  if (algorithms === undefined) return;
  const allowed: readonly string[] = ASYMMETRIC_ALGORITHMS;
  const wrong = algorithms.filter((alg) => !allowed.includes(alg));
  if (algorithms.length === 0 || wrong.length > 0) {
    fail(`\`${name}\` must list asymmetric JWS algorithms (${allowed.join(", ")}); not ${wrong.join(", ") || "an empty list"}`);
  }
}

/**
 * createTokenVerifier: the whole check of one request's access token — the authorization
 * scheme, the token (a JWT checked locally, or an opaque token introspected), its binding
 * (a DPoP-bound token needs its proof; a bearer one must not be bound) — answered as a
 * verified token or a refusal carrying its `WWW-Authenticate` challenge. Knows nothing of
 * Connect: the interceptor and the Node wrapper turn a refusal into a response.
 */
import { formatChallenge, type ChallengeParams } from "./challenge.js";
import { createProofChecker, type ProofChecker } from "./dpop-check.js";
import { createIntrospector, type Introspector } from "./introspection.js";
import { createJwtChecker } from "./jwt-check.js";
import { ASYMMETRIC_ALGORITHMS, checkVerifierOptions, type TokenVerifierOptions } from "./options.js";
import { memoryReplayCache } from "./replay-memory.js";
import type {
  AccessTokenClaims,
  ChallengeError,
  DPoPNonces,
  TokenRefusal,
  TokenRefusalReason,
  TokenScheme,
  VerifiedToken,
  VerifyRequest,
  VerifyResult,
} from "./types.js";

/**
 * Verifies access tokens for a resource server. Make one per server process and share it:
 * it holds the key set, the imported proof keys and the replay cache.
 *
 * @example
 * ```ts
 * import { createTokenVerifier, type TokenVerifier } from "connect-oidc/server";
 *
 * const verifier: TokenVerifier = createTokenVerifier({ issuer: "https://login.example.com", audience: "https://api.example.com" });
 * const nonceHeader = verifier.dpopNonce(); // undefined: this verifier has no DPoP nonces
 * ```
 */
export interface TokenVerifier {
  /** Check one request's token (and DPoP proof). Never throws for a bad token: it answers a refusal. */
  verify(request: VerifyRequest): Promise<VerifyResult>;
  /** The DPoP nonce to send now (`DPoP-Nonce`); undefined on a verifier without nonces. */
  dpopNonce(): string | undefined;
  /**
   * Response headers of a challenge in this verifier's realm, with the current DPoP nonce:
   * for refusals the verifier does not make itself (`insufficient_scope`, step-up).
   */
  challenge(scheme: TokenScheme, params: Omit<ChallengeParams, "realm">): Readonly<Record<string, string>>;
  /** Whether DPoP-bound tokens are accepted, and whether they are required. */
  readonly dpop: "off" | "allowed" | "required";
}

const TOKEN = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** The challenge's `error`: a proof's refusal is about the proof, any other about the token. */
function errorOf(reason: TokenRefusalReason, fromProof: boolean): ChallengeError | undefined {
  if (reason === "missing" || reason === "unavailable") return undefined;
  if (reason === "nonce-missing" || reason === "nonce-stale") return "use_dpop_nonce";
  // A DPoP token without cnf.jkt: the token is what is wrong.
  if (fromProof && reason !== "token-not-bound") return "invalid_dpop_proof";
  return "invalid_token";
}

/** `scope` (space-separated, RFC 9068 §2.2.3) or an `scp` array, as some issuers send. */
function scopesOf(claims: AccessTokenClaims): ReadonlySet<string> {
  if (typeof claims.scope === "string") return new Set(claims.scope.split(" ").filter(Boolean));
  const scp = claims.scp;
  if (Array.isArray(scp)) return new Set(scp.filter((s): s is string => typeof s === "string"));
  return new Set();
}

/**
 * A verifier of access tokens for one API (issuer + audience): RFC 9068 JWTs with jose,
 * optionally DPoP (RFC 9449) and introspection of opaque tokens (RFC 7662).
 *
 * @example
 * ```ts
 * import { createTokenVerifier } from "connect-oidc/server";
 *
 * const verifier = createTokenVerifier({ issuer: "https://login.example.com", audience: "https://api.example.com" });
 * const result = await verifier.verify({
 *   authorization: "Bearer eyJ...",
 *   method: "POST",
 *   url: "https://api.example.com/agent.v1.AgentSessionService/Heartbeat",
 * });
 * if (!result.ok) console.log(result.reason, result.headers["www-authenticate"]);
 * ```
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  checkVerifierOptions(options);
  const checkToken = tokenCheckOf(options);
  const proofs = proofCheckOf(options);
  const nonces = options.dpop?.nonces;
  const mode = !options.dpop ? "off" : options.dpop.required ? "required" : "allowed";
  const defaultScheme: TokenScheme = mode === "required" ? "DPoP" : "Bearer";
  const { challenge, refuse } = createRefusals(options.realm, nonces);

  const verify = async (request: VerifyRequest): Promise<VerifyResult> => {
    const authorization = request.authorization;
    if (authorization === null || authorization === undefined || authorization === "") return refuse("missing", defaultScheme);
    const match = TOKEN.exec(authorization);
    const scheme: TokenScheme | undefined = match ? (match[1]!.toLowerCase() === "dpop" ? "DPoP" : "Bearer") : undefined;
    if (!match || scheme === undefined || (scheme === "DPoP" && mode === "off") || (scheme === "Bearer" && mode === "required")) {
      return refuse("malformed", defaultScheme);
    }
    const token = match[2]!;
    const checked = await checkToken(token);
    if (!checked.ok) return refuse(checked.reason, scheme);
    const claims = checked.claims;
    if (scheme === "Bearer") {
      // RFC 9449 §7.2: a bound token is worthless without its proof.
      return claims.cnf === undefined ? verifiedOf("Bearer", checked.format, claims, undefined) : refuse("bound-token-as-bearer", scheme);
    }
    const boundJkt = typeof claims.cnf?.jkt === "string" ? claims.cnf.jkt : undefined;
    const proof = await proofs!.check({ proof: request.dpop, accessToken: token, boundJkt, method: request.method, url: request.url });
    return proof.ok ? verifiedOf("DPoP", checked.format, claims, proof.jkt) : refuse(proof.reason, scheme, proof);
  };

  return { verify, dpopNonce: () => nonces?.current(), challenge, dpop: mode };
}

type TokenCheck = (
  token: string,
) => Promise<
  | { readonly ok: true; readonly claims: AccessTokenClaims; readonly format: VerifiedToken["format"] }
  | { readonly ok: false; readonly reason: TokenRefusalReason }
>;

/** A JWT is checked locally; anything else is introspected, when introspection is configured. */
function tokenCheckOf(options: TokenVerifierOptions): TokenCheck {
  const now = options.now ?? Date.now;
  const leeway = options.clockToleranceSeconds ?? 5;
  const audience = typeof options.audience === "string" ? [options.audience] : [...options.audience];
  const jwt = createJwtChecker({
    issuer: options.issuer,
    audience,
    jwksUri: options.jwksUri,
    algorithms: options.algorithms ?? ASYMMETRIC_ALGORITHMS,
    requireTyp: options.requireTyp ?? true,
    clockToleranceSeconds: leeway,
    cooldownSeconds: options.jwks?.cooldownSeconds ?? 30,
    maxAgeSeconds: options.jwks?.maxAgeSeconds ?? 600,
    timeoutMs: options.jwks?.timeoutMs ?? 5000,
    now: options.now,
  });
  const introspector: Introspector | undefined = options.introspection
    ? createIntrospector({
        ...options.introspection,
        issuer: options.issuer,
        audience,
        allowInsecureRequests: options.allowInsecureRequests === true,
        clockToleranceSeconds: leeway,
        now,
      })
    : undefined;
  return async (token) => {
    // A JWS compact serialization has exactly two dots.
    if (token.split(".").length === 3) {
      const checked = await jwt.check(token);
      return checked.ok ? { ok: true, claims: checked.claims, format: "jwt" } : checked;
    }
    if (!introspector) return { ok: false, reason: "opaque" };
    const checked = await introspector.check(token);
    return checked.ok ? { ok: true, claims: checked.claims, format: "introspection" } : checked;
  };
}

function proofCheckOf(options: TokenVerifierOptions): ProofChecker | undefined {
  const dpop = options.dpop;
  if (!dpop) return undefined;
  const now = options.now ?? Date.now;
  return createProofChecker({
    algorithms: dpop.algorithms ?? ASYMMETRIC_ALGORITHMS,
    iatWindowSeconds: dpop.iatWindowSeconds ?? 60,
    nonces: dpop.nonces,
    replayCache: dpop.replayCache ?? memoryReplayCache({ now }),
    keyCacheSize: dpop.keyCacheSize ?? 1000,
    now,
  });
}

/** Challenges in this realm, with the current DPoP nonce; refusals carrying them. */
function createRefusals(realm: string | undefined, nonces: DPoPNonces | undefined) {
  const challenge = (scheme: TokenScheme, params: Omit<ChallengeParams, "realm">) => {
    const headers: Record<string, string> = { "www-authenticate": formatChallenge(scheme, { realm, ...params }) };
    if (nonces) headers["dpop-nonce"] = nonces.current();
    return headers;
  };
  const refuse = (reason: TokenRefusalReason, scheme: TokenScheme, proof?: { jkt?: string; nonce?: string }): TokenRefusal => {
    const error = errorOf(reason, proof !== undefined);
    // Unavailable is not the token's fault: no challenge (the client should not get a new token).
    const headers: Record<string, string> =
      reason !== "unavailable"
        ? challenge(scheme, reason === "missing" ? {} : { error, error_description: reason })
        : nonces
          ? { "dpop-nonce": nonces.current() }
          : {};
    return {
      ok: false,
      error,
      reason,
      scheme,
      headers,
      ...(proof?.jkt === undefined ? {} : { jkt: proof.jkt }),
      ...(proof?.nonce === undefined ? {} : { proofNonce: proof.nonce }),
    };
  };
  return { challenge, refuse };
}

function verifiedOf(
  scheme: TokenScheme,
  format: VerifiedToken["format"],
  claims: AccessTokenClaims,
  jkt: string | undefined,
): VerifiedToken {
  return {
    ok: true,
    scheme,
    format,
    claims,
    subject: typeof claims.sub === "string" ? claims.sub : undefined,
    clientId: typeof claims.client_id === "string" ? claims.client_id : undefined,
    scopes: scopesOf(claims),
    expiresAt: typeof claims.exp === "number" ? claims.exp : undefined,
    jkt,
  };
}

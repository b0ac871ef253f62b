/**
 * A resource server's check of a DPoP proof (RFC 9449 §4.3, §7.1), done with jose: the proof
 * is a JWS of `typ: dpop+jwt` with an asymmetric `alg`, signed by the public key it embeds
 * (`jwk`, never a private key); `htm` / `htu` name this request's method and URL (query and
 * fragment ignored); `iat` lies within a window of now; its `jti` was not seen before; `ath` is
 * base64url(SHA-256(access token)); the access token's `cnf.jkt` is the RFC 7638 thumbprint of
 * the proof's key; and, when the server hands out nonces, the proof carries a current one.
 *
 * The access token itself (signature, issuer, audience, expiry) is checked by the caller, who
 * passes the verified `cnf.jkt` in. No result carries the proof or the token.
 */
import { createHash } from "node:crypto";
import { calculateJwkThumbprint, EmbeddedJWK, errors as joseErrors, jwtVerify } from "jose";
import type { DPoPRefusalReason } from "../../src/server/types.js";
import type { DpopNonces } from "./dpop-nonces.js";

/** The asymmetric JWS algorithms accepted in proofs (the IdP advertises the same list). */
export const DPOP_ALGORITHMS = ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "Ed25519", "EdDSA"];

/** Why a proof was refused: the same reasons connect-oidc/server gives. */
export type DpopReason = DPoPRefusalReason;

/** The `error` of the `WWW-Authenticate: DPoP` challenge for a refusal. */
export type DpopError = "invalid_dpop_proof" | "use_dpop_nonce";

export type DpopProofResult =
  | { readonly ok: true; readonly jkt: string; readonly nonce: string | undefined }
  | {
      readonly ok: false;
      readonly reason: DpopReason;
      readonly error: DpopError;
      /** The proof key's thumbprint, once the signature checked out. */
      readonly jkt: string | undefined;
      readonly nonce: string | undefined;
    };

export interface DpopProofInput {
  /** The `DPoP` request header (Node joins repeated headers with ", "). */
  readonly proof: string | null | undefined;
  /** The access token sent as `authorization: DPoP <token>`. */
  readonly accessToken: string;
  /** The verified access token's `cnf.jkt` (undefined: the token is not DPoP-bound). */
  readonly boundJkt: string | undefined;
  /** The HTTP method of the request. */
  readonly method: string;
  /** The request URL as the server sees it (scheme, host, path; a query is ignored). */
  readonly url: string;
}

export interface DpopVerifierOptions {
  /** Wall clock in seconds (proofs carry wall-clock `iat`). Default `Date.now() / 1000`. */
  readonly nowSeconds?: () => number;
  /** Accepted distance of `iat` from now, in seconds, either way. Default 60. */
  readonly iatWindowSeconds?: number;
  /** Server nonces; undefined: proofs need none (a nonce sent anyway is ignored). */
  readonly nonces?: DpopNonces;
}

export interface DpopVerifier {
  verify(input: DpopProofInput): Promise<DpopProofResult>;
  /** How many `jti`s the replay cache holds (expired ones are dropped as new ones arrive). */
  readonly replayCacheSize: number;
}

/** The token of `authorization: DPoP <token>`; undefined for any other scheme. */
export function dpopTokenOf(authorization: string | null | undefined): string | undefined {
  return /^DPoP +(\S+)\s*$/i.exec(authorization ?? "")?.[1];
}

/** base64url(SHA-256(token)), the proof's `ath`. */
export function accessTokenHash(token: string): string {
  return createHash("sha256").update(token, "ascii").digest("base64url");
}

function withoutQuery(url: string): string | undefined {
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (!parsed) return undefined;
  parsed.search = "";
  parsed.hash = "";
  return parsed.href;
}

function reasonOfJoseError(err: unknown): DpopReason {
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return "bad-alg";
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === "typ") return "wrong-typ";
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "bad-signature";
  return "malformed-proof";
}

export function createDpopVerifier(options: DpopVerifierOptions = {}): DpopVerifier {
  const nowSeconds = options.nowSeconds ?? (() => Date.now() / 1000);
  const window = options.iatWindowSeconds ?? 60;
  const nonces = options.nonces;
  // jti → when it may be forgotten (a proof older than the window is refused by iat anyway).
  const seen = new Map<string, number>();

  const remember = (jti: string, now: number) => {
    for (const [old, forgetAt] of seen) {
      if (forgetAt > now) break;
      seen.delete(old);
    }
    seen.set(jti, now + 2 * window);
  };

  const verify = async (input: DpopProofInput): Promise<DpopProofResult> => {
    let jkt: string | undefined;
    let nonce: string | undefined;
    const refuse = (reason: DpopReason): DpopProofResult => ({
      ok: false,
      reason,
      error: reason === "nonce-missing" || reason === "nonce-stale" ? "use_dpop_nonce" : "invalid_dpop_proof",
      jkt,
      nonce,
    });

    const proof = input.proof?.trim();
    if (!proof) return refuse("missing-proof");
    if (proof.includes(",")) return refuse("multiple-proofs");

    let payload: Record<string, unknown>;
    try {
      const verified = await jwtVerify(proof, EmbeddedJWK, { typ: "dpop+jwt", algorithms: DPOP_ALGORITHMS });
      payload = verified.payload;
      const jwk = verified.protectedHeader.jwk;
      if (!jwk) return refuse("malformed-proof");
      jkt = await calculateJwkThumbprint(jwk);
    } catch (err) {
      return refuse(reasonOfJoseError(err));
    }
    const { jti, htm, htu, iat, ath } = payload;
    if (typeof payload.nonce === "string") nonce = payload.nonce;
    if (typeof jti !== "string" || jti === "" || typeof iat !== "number") return refuse("malformed-proof");
    if (htm !== input.method) return refuse("htm-mismatch");
    const expectedHtu = withoutQuery(input.url);
    if (typeof htu !== "string" || expectedHtu === undefined || withoutQuery(htu) !== expectedHtu) return refuse("htu-mismatch");
    const now = nowSeconds();
    if (Math.abs(now - iat) > window) return refuse("iat-outside-window");
    if (ath !== accessTokenHash(input.accessToken)) return refuse("ath-mismatch");
    if (input.boundJkt === undefined) return refuse("token-not-bound");
    if (input.boundJkt !== jkt) return refuse("jkt-mismatch");
    if (nonces) {
      if (nonce === undefined) return refuse("nonce-missing");
      if (!nonces.accepts(nonce)) return refuse("nonce-stale");
    }
    if (seen.has(jti)) return refuse("jti-replayed");
    remember(jti, now);
    return { ok: true, jkt, nonce };
  };

  return {
    verify,
    get replayCacheSize() {
      return seen.size;
    },
  };
}

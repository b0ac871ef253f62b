/**
 * DPoP proofs for resource servers (RFC 9449 §4, §7): a compact JWS signed with WebCrypto,
 * its header (`typ`, `alg`, `jwk`) encoded once per key, a fresh `jti` and `iat` each time,
 * `ath` for the access token sent, and the server's latest nonce for the request's origin.
 * No openid-client here: a call with a valid token must not load it.
 */
import { base64url, type DPoPAlgorithm, jwkThumbprint, publicJwkOf, signParams } from "./dpop-key.js";

/** What one proof is for. */
export interface ProofClaims {
  /** The HTTP method (`htm`). */
  readonly method: string;
  /** The request URL; the proof's `htu` is it without query and fragment. */
  readonly url: string;
  /** The access token sent with it (`ath`); none at a token endpoint. */
  readonly accessToken?: string;
  /** The server's nonce, when it asked for one. */
  readonly nonce?: string;
}

export interface ProofSigner {
  /** The RFC 7638 thumbprint of the public key: what a bound token's `cnf.jkt` holds. */
  readonly thumbprint: string;
  /** A new proof; `nowSeconds` is its `iat` (wall clock, whole seconds). */
  sign(claims: ProofClaims, nowSeconds: number): Promise<string>;
}

const encoder = new TextEncoder();
const encodeJson = (value: unknown) => base64url(encoder.encode(JSON.stringify(value)));

/** A signer for one key pair (its public key must be extractable; it goes into every header). */
export async function createProofSigner(algorithm: DPoPAlgorithm, keyPair: CryptoKeyPair): Promise<ProofSigner> {
  const jwk = await publicJwkOf(algorithm, keyPair.publicKey);
  const header = encodeJson({ typ: "dpop+jwt", alg: algorithm, jwk });
  const params = signParams(algorithm);
  // `ath` of the last token: a token is sent on many calls, its hash is computed once.
  let lastToken: string | undefined;
  let lastAth: Promise<string> | undefined;
  const ath = (token: string) => {
    if (token !== lastToken || lastAth === undefined) {
      lastToken = token;
      lastAth = crypto.subtle.digest("SHA-256", encoder.encode(token)).then((d) => base64url(new Uint8Array(d)));
    }
    return lastAth;
  };
  return {
    thumbprint: await jwkThumbprint(algorithm, jwk),
    async sign(claims, nowSeconds) {
      const payload: Record<string, string | number> = {
        jti: base64url(crypto.getRandomValues(new Uint8Array(16))),
        htm: claims.method,
        htu: htuOf(claims.url),
        iat: Math.floor(nowSeconds),
      };
      if (claims.accessToken !== undefined) payload.ath = await ath(claims.accessToken);
      if (claims.nonce !== undefined) payload.nonce = claims.nonce;
      const input = `${header}.${encodeJson(payload)}`;
      const signature = await crypto.subtle.sign(params, keyPair.privateKey, encoder.encode(input));
      return `${input}.${base64url(new Uint8Array(signature))}`;
    },
  };
}

/** The `htu` of a request URL: scheme, host, port and path; no query, no fragment (RFC 9449 §4.2). */
export function htuOf(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
}

/** The most origins whose nonce is remembered; the least recently used is forgotten first. */
const MAX_ORIGINS = 100;
/** A nonce longer than this is not kept (it would only bloat every proof). */
const MAX_NONCE_LENGTH = 1024;
/** RFC 9449 §8.1: `nonce = 1*NQCHAR` (printable ASCII but `"` and `\`). */
const NONCE = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/**
 * What is wrong with a `DPoP-Nonce` header value (`Headers.get`: null when absent, several
 * joined with ", "), or undefined for a nonce. Never quotes the value.
 */
export function nonceProblem(value: string | null | undefined): string | undefined {
  if (value === null || value === undefined) return "no DPoP-Nonce header";
  if (value === "") return "an empty DPoP-Nonce header";
  if (value.length > MAX_NONCE_LENGTH) return `a DPoP-Nonce of ${value.length} characters (at most ${MAX_NONCE_LENGTH} are taken)`;
  if (!NONCE.test(value))
    return "a DPoP-Nonce that is not a nonce (RFC 9449 §8.1: printable ASCII, no space, quote or backslash; or several headers)";
  return undefined;
}

/** Server nonces, one per origin (scheme, host, port), the latest a server sent. */
export interface NonceCache {
  get(url: string): string | undefined;
  /** A server at `url` sent `DPoP-Nonce: nonce`; a value that is not a nonce is ignored. */
  set(url: string, nonce: string): void;
}

export function createNonceCache(): NonceCache {
  const nonces = new Map<string, string>();
  const originOf = (url: string) => {
    try {
      return new URL(url).origin;
    } catch {
      return undefined;
    }
  };
  return {
    get(url) {
      const origin = originOf(url);
      return origin === undefined ? undefined : nonces.get(origin);
    },
    set(url, nonce) {
      const origin = originOf(url);
      if (origin === undefined || typeof nonce !== "string" || nonceProblem(nonce) !== undefined) return;
      nonces.delete(origin);
      if (nonces.size >= MAX_ORIGINS) nonces.delete(nonces.keys().next().value as string);
      nonces.set(origin, nonce);
    },
  };
}

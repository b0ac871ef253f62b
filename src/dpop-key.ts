/**
 * DPoP key pairs (RFC 9449) through WebCrypto: which algorithms, how a pair is made, how
 * it is kept with a login (as JWKs for stores that serialize, as CryptoKeys in memory),
 * and its public JWK and thumbprint. No I/O but WebCrypto; runs wherever `crypto.subtle` does.
 */
import { ConfigurationError } from "./errors.js";

/**
 * A JWS algorithm for DPoP proofs. ES256 (the default) is small and quick to sign; RSA keys
 * take about 1.7 KB in a store (too large for Windows Credential Manager with a token set).
 *
 * @example
 * ```ts
 * import { createTokenManager, type DPoPAlgorithm } from "connect-oidc";
 *
 * const algorithm: DPoPAlgorithm = "ES384";
 * const tokens = createTokenManager({ issuer, clientId, dpop: { algorithm } });
 * ```
 */
export type DPoPAlgorithm = "ES256" | "ES384" | "ES512" | "PS256" | "RS256" | "Ed25519";

/**
 * The `dpop` option of the token manager and both logins: `true` for ES256, or the algorithm.
 *
 * @example
 * ```ts
 * import { loginWithDeviceCode, type DPoPOption } from "connect-oidc";
 *
 * const dpop: DPoPOption = { algorithm: "ES256" }; // the same as `true`
 * const login = await loginWithDeviceCode({ issuer, clientId, dpop, onUserCode });
 * ```
 */
export type DPoPOption = true | { readonly algorithm?: DPoPAlgorithm };

/**
 * A login's DPoP key pair, as a login hands it over (`TokenEndpointResponse.dpopKey`): the
 * tokens are bound to it. Its public key is extractable (it goes into every proof).
 *
 * @example
 * ```ts
 * import { loginWithDeviceCode, type DPoPKey } from "connect-oidc";
 *
 * const login = await loginWithDeviceCode({ issuer, clientId, dpop: true, onUserCode });
 * const key: DPoPKey | undefined = login.dpopKey;
 * console.log(key?.algorithm); // "ES256"
 * ```
 */
export interface DPoPKey {
  readonly algorithm: DPoPAlgorithm;
  readonly keyPair: CryptoKeyPair;
}

/**
 * A login's DPoP key as a store holds it (`StoredTokens.dpopKey`). Stores that serialize
 * (fileStore, keyringStore, your own JSON store) get the pair as JWKs, the private one
 * included: every process sharing the login shares the key. A store that keeps objects as
 * they are (`TokenStore.keepsCryptoKeys`, as memoryStore does) gets the CryptoKeyPair, its
 * private key not extractable.
 *
 * @example
 * ```ts
 * import type { StoredDPoPKey } from "connect-oidc";
 *
 * function describe(key: StoredDPoPKey): string {
 *   return "keyPair" in key ? `${key.algorithm}, in memory` : `${key.algorithm}, as JWKs`;
 * }
 * ```
 */
export type StoredDPoPKey =
  | { readonly algorithm: DPoPAlgorithm; readonly publicJwk: JsonWebKey; readonly privateJwk: JsonWebKey }
  | { readonly algorithm: DPoPAlgorithm; readonly keyPair: CryptoKeyPair };

interface Params {
  readonly generate: RsaHashedKeyGenParams | EcKeyGenParams | Algorithm;
  readonly import: RsaHashedImportParams | EcKeyImportParams | Algorithm;
  readonly sign: RsaPssParams | EcdsaParams | Algorithm;
  /** The JWK members of the public key, in RFC 7638 order (the thumbprint's input). */
  readonly publicMembers: readonly string[];
  readonly privateMembers: readonly string[];
  readonly kty: string;
  readonly crv?: string;
}

const rsa = (name: string, sign: RsaPssParams | Algorithm): Params => ({
  generate: { name, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
  import: { name, hash: "SHA-256" },
  sign,
  publicMembers: ["e", "kty", "n"],
  privateMembers: ["d", "p", "q", "dp", "dq", "qi"],
  kty: "RSA",
});
const ec = (crv: string, hash: string): Params => ({
  generate: { name: "ECDSA", namedCurve: crv },
  import: { name: "ECDSA", namedCurve: crv },
  sign: { name: "ECDSA", hash },
  publicMembers: ["crv", "kty", "x", "y"],
  privateMembers: ["d"],
  kty: "EC",
  crv,
});

const PARAMS: Readonly<Record<DPoPAlgorithm, Params>> = {
  ES256: ec("P-256", "SHA-256"),
  ES384: ec("P-384", "SHA-384"),
  ES512: ec("P-521", "SHA-512"),
  PS256: rsa("RSA-PSS", { name: "RSA-PSS", saltLength: 32 }),
  RS256: rsa("RSASSA-PKCS1-v1_5", { name: "RSASSA-PKCS1-v1_5" }),
  Ed25519: {
    generate: { name: "Ed25519" },
    import: { name: "Ed25519" },
    sign: { name: "Ed25519" },
    publicMembers: ["crv", "kty", "x"],
    privateMembers: ["d"],
    kty: "OKP",
    crv: "Ed25519",
  },
};

export const DPOP_ALGORITHMS = Object.keys(PARAMS) as readonly DPoPAlgorithm[];

export function isDPoPAlgorithm(value: unknown): value is DPoPAlgorithm {
  return typeof value === "string" && Object.hasOwn(PARAMS, value);
}

/** The algorithm a `dpop` option asks for (undefined: DPoP off); a bad option is a ConfigurationError. */
export function dpopAlgorithm(name: string, option: unknown): DPoPAlgorithm | undefined {
  if (option === undefined || option === false) return undefined;
  if (option === true) return "ES256";
  if (typeof option === "object" && option !== null && !Array.isArray(option)) {
    const algorithm = (option as { algorithm?: unknown }).algorithm ?? "ES256";
    if (isDPoPAlgorithm(algorithm)) return algorithm;
  }
  throw new ConfigurationError(`${name}: \`dpop\` must be true or { algorithm?: ${DPOP_ALGORITHMS.map((a) => `"${a}"`).join(" | ")} }`);
}

/** The WebCrypto parameters to sign with a key of `algorithm`. */
export function signParams(algorithm: DPoPAlgorithm): RsaPssParams | EcdsaParams | Algorithm {
  return PARAMS[algorithm].sign;
}

/**
 * A new key pair. `extractable`: whether the private key can be exported (needed to keep it
 * as a JWK in a store that serializes); the public key always can.
 */
export async function generateDPoPKey(algorithm: DPoPAlgorithm, extractable: boolean): Promise<DPoPKey> {
  // WebCrypto applies `extractable` to the private key only: a public key always is.
  const keyPair = (await crypto.subtle.generateKey(PARAMS[algorithm].generate, extractable, ["sign", "verify"])) as CryptoKeyPair;
  return { algorithm, keyPair };
}

/**
 * The form a store keeps: the CryptoKeyPair with a non-extractable private key for a store
 * that keeps objects (`keepsCryptoKeys`), else the pair as JWKs.
 */
export async function storedForm(key: DPoPKey, keepsCryptoKeys: boolean): Promise<StoredDPoPKey> {
  const { algorithm, keyPair } = key;
  if (keepsCryptoKeys && !keyPair.privateKey.extractable) return { algorithm, keyPair };
  const privateJwk = pick(await crypto.subtle.exportKey("jwk", keyPair.privateKey), algorithm, true);
  if (!keepsCryptoKeys) return { algorithm, publicJwk: pick(privateJwk, algorithm, false), privateJwk };
  return { algorithm, keyPair: await importPair({ algorithm, publicJwk: pick(privateJwk, algorithm, false), privateJwk }) };
}

/** The key pair of a stored key: the private key not extractable, the public one extractable. */
export async function keyPairOf(stored: StoredDPoPKey): Promise<CryptoKeyPair> {
  return "keyPair" in stored ? stored.keyPair : importPair(stored);
}

async function importPair(stored: { algorithm: DPoPAlgorithm; publicJwk: JsonWebKey; privateJwk: JsonWebKey }): Promise<CryptoKeyPair> {
  const params = PARAMS[stored.algorithm].import;
  const [privateKey, publicKey] = await Promise.all([
    crypto.subtle.importKey("jwk", { ...stored.privateJwk, ext: false }, params, false, ["sign"]),
    crypto.subtle.importKey("jwk", stored.publicJwk, params, true, ["verify"]),
  ]);
  return { privateKey, publicKey };
}

/** The public JWK with only its required members (what a proof's header carries). */
export async function publicJwkOf(algorithm: DPoPAlgorithm, publicKey: CryptoKey): Promise<JsonWebKey> {
  return pick(await crypto.subtle.exportKey("jwk", publicKey), algorithm, false);
}

/** The JWK thumbprint (RFC 7638, SHA-256, base64url) of a public JWK of `algorithm`. */
export async function jwkThumbprint(algorithm: DPoPAlgorithm, jwk: JsonWebKey): Promise<string> {
  const members = PARAMS[algorithm].publicMembers;
  const text = `{${members.map((m) => `${JSON.stringify(m)}:${JSON.stringify((jwk as Record<string, unknown>)[m])}`).join(",")}}`;
  return base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))));
}

/** The members of `jwk` that a public (or private) key of `algorithm` needs, nothing else. */
function pick(jwk: JsonWebKey, algorithm: DPoPAlgorithm, withPrivate: boolean): JsonWebKey {
  const { publicMembers, privateMembers } = PARAMS[algorithm];
  const out: Record<string, unknown> = {};
  for (const member of withPrivate ? [...publicMembers, ...privateMembers] : publicMembers) {
    out[member] = (jwk as Record<string, unknown>)[member];
  }
  return out as JsonWebKey;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * A copy of `value` if it has the shape of a JWK-form `StoredDPoPKey` (the members its
 * algorithm needs, base64url strings, the right key type and curve), else undefined.
 * Never quotes the value.
 */
export function storedJwkKey(value: unknown): StoredDPoPKey | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { algorithm, publicJwk, privateJwk } = value as Record<string, unknown>;
  if (!isDPoPAlgorithm(algorithm)) return undefined;
  const params = PARAMS[algorithm];
  const check = (jwk: unknown, members: readonly string[]): JsonWebKey | undefined => {
    if (typeof jwk !== "object" || jwk === null) return undefined;
    const record = jwk as Record<string, unknown>;
    if (record.kty !== params.kty || (params.crv !== undefined && record.crv !== params.crv)) return undefined;
    for (const member of members) {
      if (member === "kty" || member === "crv") continue;
      const v = record[member];
      if (typeof v !== "string" || v.length > 2048 || !BASE64URL.test(v)) return undefined;
    }
    return pick(record as JsonWebKey, algorithm, members.length > params.publicMembers.length);
  };
  const pub = check(publicJwk, params.publicMembers);
  const priv = check(privateJwk, [...params.publicMembers, ...params.privateMembers]);
  if (pub === undefined || priv === undefined) return undefined;
  // The private JWK's public members must be the public key's.
  if (params.publicMembers.some((m) => (pub as Record<string, unknown>)[m] !== (priv as Record<string, unknown>)[m])) return undefined;
  return { algorithm, publicJwk: pub, privateJwk: priv };
}

/** A login's key as the logins hand it over: an algorithm and a CryptoKeyPair whose public key is extractable. */
export function isDPoPKey(value: unknown): value is DPoPKey {
  if (typeof value !== "object" || value === null) return false;
  const { algorithm, keyPair } = value as { algorithm?: unknown; keyPair?: { privateKey?: unknown; publicKey?: unknown } };
  return (
    isDPoPAlgorithm(algorithm) &&
    typeof CryptoKey !== "undefined" &&
    keyPair?.privateKey instanceof CryptoKey &&
    keyPair.publicKey instanceof CryptoKey &&
    keyPair.privateKey.type === "private" &&
    keyPair.publicKey.type === "public" &&
    keyPair.publicKey.extractable
  );
}

/** base64url without padding (RFC 7515 §2). */
export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** `token_type` says DPoP (compared case-insensitively, RFC 6749 §5.1). */
export function isDPoPTokenType(tokenType: unknown): boolean {
  return typeof tokenType === "string" && tokenType.toLowerCase() === "dpop";
}

/** The RFC 7638 thumbprint of a stored key's public part (the `jkt` its tokens are bound to). */
export async function storedKeyThumbprint(stored: StoredDPoPKey): Promise<string> {
  const publicJwk = "keyPair" in stored ? await publicJwkOf(stored.algorithm, stored.keyPair.publicKey) : stored.publicJwk;
  return jwkThumbprint(stored.algorithm, publicJwk);
}

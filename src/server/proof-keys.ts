/**
 * The public keys of DPoP proofs and the check of a proof's signature with node:crypto:
 * the RFC 7638 thumbprint is computed from the embedded JWK's required members, the key is
 * imported once per thumbprint and algorithm and kept (bounded, least recently used dropped),
 * and the signature is verified synchronously — importing a key, and WebCrypto's round trip
 * to its thread pool, cost more than the verification itself. The algorithm must fit the key
 * (curve, key type, RSA modulus of at least 2048 bits): a header cannot choose another.
 */
import { constants, createHash, createPublicKey, type KeyObject, verify } from "node:crypto";

/** The members RFC 7638 §3.2 hashes, per key type, in lexicographic order. */
const REQUIRED: Readonly<Record<string, readonly string[]>> = {
  EC: ["crv", "kty", "x", "y"],
  RSA: ["e", "kty", "n"],
  OKP: ["crv", "kty", "x"],
};

/** Members that only a private (or symmetric) key has: a proof must never carry one. */
const PRIVATE = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

interface AlgorithmSpec {
  readonly kty: "EC" | "RSA" | "OKP";
  /** EC / OKP: the curve the key must be on. */
  readonly crv?: string;
  /** The digest, or null for EdDSA. */
  readonly hash: string | null;
  readonly pss?: boolean;
}

const ALGORITHMS: Readonly<Record<string, AlgorithmSpec>> = {
  ES256: { kty: "EC", crv: "P-256", hash: "sha256" },
  ES384: { kty: "EC", crv: "P-384", hash: "sha384" },
  ES512: { kty: "EC", crv: "P-521", hash: "sha512" },
  RS256: { kty: "RSA", hash: "sha256" },
  RS384: { kty: "RSA", hash: "sha384" },
  RS512: { kty: "RSA", hash: "sha512" },
  PS256: { kty: "RSA", hash: "sha256", pss: true },
  PS384: { kty: "RSA", hash: "sha384", pss: true },
  PS512: { kty: "RSA", hash: "sha512", pss: true },
  EdDSA: { kty: "OKP", crv: "Ed25519", hash: null },
  Ed25519: { kty: "OKP", crv: "Ed25519", hash: null },
};

/** The required members of a public JWK (what is hashed and imported); undefined when it is not one. */
export function publicMembersOf(jwk: Record<string, unknown>): Record<string, string> | undefined {
  const members = typeof jwk.kty === "string" ? REQUIRED[jwk.kty] : undefined;
  if (!members || PRIVATE.some((name) => name in jwk)) return undefined;
  const canonical: Record<string, string> = {};
  for (const name of members) {
    const value = jwk[name];
    if (typeof value !== "string" || value === "") return undefined;
    canonical[name] = value;
  }
  return canonical;
}

/** RFC 7638 thumbprint (SHA-256, base64url) of a public JWK's required members. */
export function thumbprintOf(members: Record<string, string>): string {
  return createHash("sha256").update(JSON.stringify(members)).digest("base64url");
}

export interface ProofKeys {
  /**
   * Whether `signature` over `signingInput` verifies with this key under `alg`; false too
   * when the algorithm does not fit the key.
   */
  verify(members: Record<string, string>, jkt: string, alg: string, signingInput: string, signature: Buffer): boolean;
}

/** The key for `alg`, or undefined when the two do not fit. */
function importFor(members: Record<string, string>, spec: AlgorithmSpec): KeyObject | undefined {
  if (members.kty !== spec.kty || (spec.crv !== undefined && members.crv !== spec.crv)) return undefined;
  try {
    const key = createPublicKey({ key: members, format: "jwk" });
    if (spec.kty === "RSA" && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return undefined;
    return key;
  } catch {
    return undefined;
  }
}

export function createProofKeys(maxEntries: number): ProofKeys {
  // "alg jkt" → the imported key, or null when the algorithm does not fit it.
  const keys = new Map<string, KeyObject | null>();
  const keyFor = (members: Record<string, string>, jkt: string, alg: string, spec: AlgorithmSpec): KeyObject | undefined => {
    const id = `${alg} ${jkt}`;
    let key = keys.get(id);
    if (key !== undefined) {
      // Most recently used last.
      keys.delete(id);
    } else {
      key = importFor(members, spec) ?? null;
      if (keys.size >= maxEntries) keys.delete(keys.keys().next().value as string);
    }
    keys.set(id, key);
    return key ?? undefined;
  };
  return {
    verify(members, jkt, alg, signingInput, signature) {
      const spec = ALGORITHMS[alg];
      if (!spec) return false;
      const key = keyFor(members, jkt, alg, spec);
      if (!key) return false;
      const data = Buffer.from(signingInput, "ascii");
      if (spec.kty === "EC") return verify(spec.hash, data, { key, dsaEncoding: "ieee-p1363" }, signature);
      if (spec.pss) {
        return verify(
          spec.hash,
          data,
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
          signature,
        );
      }
      return verify(spec.hash, data, key, signature);
    },
  };
}

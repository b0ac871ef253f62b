/**
 * The public keys of DPoP proofs, by RFC 7638 thumbprint: the thumbprint is computed from
 * the embedded JWK's required members (synchronously, node:crypto), and a key is imported
 * once per thumbprint and algorithm, then kept (bounded, least recently used dropped).
 * Importing a key costs more than verifying a signature with it.
 */
import { createHash } from "node:crypto";
import type { CryptoKey, JWK } from "jose";
import { loadJose } from "./jose.js";

/** The members RFC 7638 §3.2 hashes, per key type, in lexicographic order. */
const REQUIRED: Readonly<Record<string, readonly string[]>> = {
  EC: ["crv", "kty", "x", "y"],
  RSA: ["e", "kty", "n"],
  OKP: ["crv", "kty", "x"],
};

/** Members that only a private key has: a proof must never carry one. */
const PRIVATE = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/** RFC 7638 thumbprint (SHA-256, base64url) of a public JWK; undefined when it is not one. */
export function thumbprintOf(jwk: Record<string, unknown>): string | undefined {
  const members = typeof jwk.kty === "string" ? REQUIRED[jwk.kty] : undefined;
  if (!members || PRIVATE.some((name) => name in jwk)) return undefined;
  const canonical: Record<string, string> = {};
  for (const name of members) {
    const value = jwk[name];
    if (typeof value !== "string" || value === "") return undefined;
    canonical[name] = value;
  }
  return createHash("sha256").update(JSON.stringify(canonical)).digest("base64url");
}

export interface ProofKeys {
  /** The imported key for this JWK and algorithm (cached by thumbprint). */
  keyFor(jwk: Record<string, unknown>, jkt: string, alg: string): Promise<CryptoKey | Uint8Array>;
}

export function createProofKeys(maxEntries: number): ProofKeys {
  const keys = new Map<string, Promise<CryptoKey | Uint8Array>>();
  return {
    keyFor(jwk, jkt, alg) {
      const id = `${alg} ${jkt}`;
      let key = keys.get(id);
      if (key !== undefined) {
        // Most recently used last.
        keys.delete(id);
        keys.set(id, key);
        return key;
      }
      key = loadJose().then((jose) => jose.importJWK(jwk as JWK, alg));
      // A key that fails to import is not kept.
      key.catch(() => keys.delete(id));
      if (keys.size >= maxEntries) keys.delete(keys.keys().next().value as string);
      keys.set(id, key);
      return key;
    },
  };
}

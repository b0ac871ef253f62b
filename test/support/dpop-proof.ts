/**
 * Hand-made DPoP proofs (RFC 9449 §4.2) for tests, signed with jose: every claim can be set,
 * so a test can make the proofs a thief or a broken client would send.
 */
import { randomUUID } from "node:crypto";
import { exportJWK, type JWK, SignJWT } from "jose";
import { accessTokenHash } from "./dpop-verify.js";

export interface ProofClaims {
  /** HTTP method. */
  readonly htm: string;
  /** Request URL (a query and fragment are the verifier's to ignore). */
  readonly htu: string;
  /** The access token the proof goes with (`ath`); none for a token request. */
  readonly accessToken?: string;
  readonly nonce?: string;
  /** Seconds since the epoch. Default now. */
  readonly iat?: number;
  /** Default a fresh UUID. */
  readonly jti?: string;
  /** Header `typ`. Default "dpop+jwt". */
  readonly typ?: string;
}

export interface ProofSigner {
  /** The public JWK embedded in every proof. */
  readonly jwk: JWK;
  sign(claims: ProofClaims): Promise<string>;
}

export async function createProofSigner(keyPair: CryptoKeyPair, alg = "ES256"): Promise<ProofSigner> {
  const { kty, crv, x, y, n, e } = await exportJWK(keyPair.publicKey);
  const jwk = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined)) as JWK;
  return {
    jwk,
    sign(claims) {
      return new SignJWT({
        htm: claims.htm,
        htu: claims.htu,
        jti: claims.jti ?? randomUUID(),
        ...(claims.accessToken === undefined ? {} : { ath: accessTokenHash(claims.accessToken) }),
        ...(claims.nonce === undefined ? {} : { nonce: claims.nonce }),
      })
        .setProtectedHeader({ alg, typ: claims.typ ?? "dpop+jwt", jwk })
        .setIssuedAt(claims.iat ?? Math.floor(Date.now() / 1000))
        .sign(keyPair.privateKey);
    },
  };
}

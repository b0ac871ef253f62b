/**
 * DPoP-bound logins for tests that hand a login to another process, runtime or page: the
 * test IdP's login bound to a new ES256 key (openid-client's `getDPoPHandle`), with the key
 * as JWKs (a CryptoKeyPair does not travel as JSON) and the import on the other side, which
 * gives the key as the logins hand it over (`TokenEndpointResponse.dpopKey`). Runs anywhere
 * WebCrypto does (the import is bundled into browser pages and Deno/Bun scripts).
 */
import type { DPoPKey } from "../../src/index.js";

/** A login's key pair as JWKs. */
export interface LoginKeyJwk {
  readonly algorithm: "ES256";
  readonly publicJwk: JsonWebKey;
  readonly privateJwk: JsonWebKey;
}

const ES256 = { name: "ECDSA", namedCurve: "P-256" };

/** The login's key from JWKs, extractable as a login's own key is. */
export async function importLoginKey(jwk: LoginKeyJwk): Promise<DPoPKey> {
  const [privateKey, publicKey] = await Promise.all([
    crypto.subtle.importKey("jwk", jwk.privateJwk, ES256, true, ["sign"]),
    crypto.subtle.importKey("jwk", jwk.publicJwk, ES256, true, ["verify"]),
  ]);
  return { algorithm: jwk.algorithm, keyPair: { privateKey, publicKey } };
}

/**
 * The test IdP's login bound to a new ES256 DPoP key (Node side; see dpop-login.ts for the
 * import on the other side): the key pair, and the same as JWKs for another process.
 */
import * as oidc from "openid-client";
import type { DPoPKey } from "../../src/index.js";
import type { LoginKeyJwk } from "./dpop-login.js";
import type { Idp, TokenResponse } from "./idp.js";

export interface BoundLogin {
  readonly login: TokenResponse;
  /** The key as the logins hand it over. */
  readonly dpopKey: DPoPKey;
  readonly dpopJwk: LoginKeyJwk;
}

export async function boundLogin(idp: Idp): Promise<BoundLogin> {
  const keyPair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const login = await idp.login({ dpop: oidc.getDPoPHandle(await idp.cliConfig(), keyPair) });
  const [publicJwk, privateJwk] = await Promise.all([
    crypto.subtle.exportKey("jwk", keyPair.publicKey),
    crypto.subtle.exportKey("jwk", keyPair.privateKey),
  ]);
  return { login, dpopKey: { algorithm: "ES256", keyPair }, dpopJwk: { algorithm: "ES256", publicJwk, privateJwk } };
}

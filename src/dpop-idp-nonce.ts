/**
 * The identity provider's DPoP nonces, shared by every openid-client DPoP handle this process
 * makes for one key: the login's handle, then the token manager's. A handle keeps the nonces
 * it learns to itself, and the manager makes its own (it re-imports the login's key), so
 * without this every new manager paid one `use_dpop_nonce` round trip on its first refresh.
 * Each proof a handle signs leaves its nonce here (the one the provider last asked for); a
 * proof for which the handle has none takes the one kept here for its key and origin.
 * In memory only: another process starts without one.
 */
import type * as oidc from "openid-client";
import { nonceProblem } from "./dpop-proof.js";

/** Keys × origins remembered; the least recently used is forgotten first. */
const MAX_ENTRIES = 64;
const nonces = new Map<string, string>();

/** The key and origin a proof is for: its header's public JWK (as oauth4webapi writes it) and its `htu`'s origin. */
function entryOf(header: { jwk?: unknown }, payload: { htu?: unknown }): string | undefined {
  if (typeof header.jwk !== "object" || header.jwk === null || typeof payload.htu !== "string" || !URL.canParse(payload.htu)) {
    return undefined;
  }
  return `${JSON.stringify(header.jwk)} ${new URL(payload.htu).origin}`;
}

/** Sees every proof a handle signs (openid-client's `modifyAssertion`): fills in a missing nonce, keeps a present one. */
function shareNonce(header: { jwk?: unknown }, payload: { htu?: unknown; nonce?: unknown }): void {
  const entry = entryOf(header, payload);
  if (entry === undefined) return;
  if (payload.nonce === undefined) {
    const known = nonces.get(entry);
    if (known !== undefined) payload.nonce = known;
    return;
  }
  if (typeof payload.nonce !== "string" || nonceProblem(payload.nonce) !== undefined) return;
  nonces.delete(entry);
  if (nonces.size >= MAX_ENTRIES) nonces.delete(nonces.keys().next().value as string);
  nonces.set(entry, payload.nonce);
}

/** openid-client's DPoP handle for `keyPair`, sharing the provider's nonces as above. */
export function idpDPoPHandle(lib: typeof import("openid-client"), config: oidc.Configuration, keyPair: CryptoKeyPair): oidc.DPoPHandle {
  return lib.getDPoPHandle(config, keyPair, { [lib.modifyAssertion]: shareNonce });
}

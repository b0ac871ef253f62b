/** A login as `setTokens` stores it, for the cold-start bench and test. */
import { createTokenManager, memoryStore } from "../../src/index.js";
import type { StoredTokens } from "../../src/types.js";
import { boundLogin } from "./dpop-bound-login.js";
import type { Idp } from "./idp.js";
import { createManualClock } from "./manual-clock.js";

/**
 * The test IdP's login as the store holds it, its clock moved by `shiftMs` (negative: in the
 * past). `dpop`: bound to a new ES256 key, kept as JWKs (as a file or keyring store keeps it).
 */
export async function storedLogin(idp: Idp, shiftMs = 0, options: { readonly dpop?: boolean } = {}): Promise<StoredTokens> {
  const store = options.dpop ? { ...memoryStore(), keepsCryptoKeys: false } : memoryStore();
  const manager = createTokenManager({
    issuer: idp.issuer,
    clientId: idp.clientId,
    allowInsecureRequests: true,
    store,
    clock: createManualClock(Date.now() + shiftMs),
    ...(options.dpop ? { dpop: true as const } : {}),
  });
  await manager.setTokens(options.dpop ? await boundLogin(idp).then(({ login, dpopKey }) => ({ ...login, dpopKey })) : await idp.login());
  manager.close();
  const stored = await store.load();
  if (stored === undefined) throw new Error("storedLogin: nothing was stored");
  return stored;
}

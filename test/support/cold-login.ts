/** A login as `setTokens` stores it, for the cold-start bench and test. */
import { createTokenManager, memoryStore } from "../../src/index.js";
import type { StoredTokens } from "../../src/types.js";
import type { Idp } from "./idp.js";
import { createManualClock } from "./manual-clock.js";

/** The test IdP's login as the store holds it, its clock moved by `shiftMs` (negative: in the past). */
export async function storedLogin(idp: Idp, shiftMs = 0): Promise<StoredTokens> {
  const store = memoryStore();
  const manager = createTokenManager({
    issuer: idp.issuer,
    clientId: idp.clientId,
    allowInsecureRequests: true,
    store,
    clock: createManualClock(Date.now() + shiftMs),
  });
  await manager.setTokens(await idp.login());
  manager.close();
  const stored = await store.load();
  if (stored === undefined) throw new Error("storedLogin: nothing was stored");
  return stored;
}

/**
 * The token manager when the wall clock steps back (an NTP correction, a VM resumed), on a
 * manual clock whose wall reading steps on its own, against the real oidc-provider: another
 * process's rotated login is adopted rather than refreshed over with a consumed token, a
 * refused token is still replaced, and a re-login elsewhere is still seen.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { memoryStore, ReauthRequiredError, type TokenManager } from "../../src/index.js";
import { managerSuite } from "../support/manager-suite.js";

const HOUR = 3600_000;

describe("token manager: wall-clock steps (real oidc-provider)", () => {
  const s = managerSuite();
  const { leaks, manage, setup, get, rejects } = s;

  // A manager of an older build has no accepted(); the test then fails on its assertions.
  const accepted = (m: TokenManager, token: string) => (m as Partial<TokenManager>).accepted?.(token);

  it("a backward step: another process's rotated login is adopted, not refreshed over with a consumed token", async () => {
    const store = memoryStore();
    const { manager: a, clock, login } = await setup({ store });
    const b = manage({ clock, store });
    assert.equal(await get(b), login.access_token);
    await clock.stepWall(-HOUR);
    const invalidBefore = s.idp.stats.invalidGrant;
    const rotated = await get(a, { rejected: login.access_token });
    const seenByB = await get(b, { rejected: login.access_token });
    assert.equal(seenByB, rotated, "b adopted a's login");
    assert.equal(s.idp.stats.invalidGrant, invalidBefore, "no invalid_grant (the grant would be revoked)");
    assert.equal(await get(a), rotated);
  });

  it("a backward step: a refused token is still replaced, and a re-login elsewhere is still seen", async () => {
    const store = memoryStore();
    const { manager: a, clock, login } = await setup({ store });
    accepted(a, login.access_token);
    const t1 = await get(a, { rejected: login.access_token });
    accepted(a, t1);
    await clock.stepWall(-HOUR);
    await clock.advance(2000);
    const t2 = await get(a, { rejected: t1 });
    assert.notEqual(t2, t1, "a refused token is replaced after the step");
    // Re-login: b's grant dies, a logs in again after another step back.
    const b = manage({ clock, store });
    await get(b);
    await s.idp.revokeGrant();
    await clock.advance(HOUR + 1);
    assert.ok((await rejects(b.getAccessToken())) instanceof ReauthRequiredError);
    await clock.stepWall(-HOUR);
    const again = await s.idp.login();
    leaks.remember(again.access_token, again.refresh_token);
    await a.setTokens(again);
    await clock.advance(1500);
    assert.equal(await get(b), again.access_token, "b sees the new login within the recheck interval");
  });
});

/**
 * Refreshing on demand only (`refreshWindowMs: 0`) and long identity-provider outages, on a
 * manual clock against the real oidc-provider: no timer and no request without a caller,
 * and calls that succeed within about a second of the provider's return.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TokenRefreshError } from "../../src/index.js";
import { managerSuite } from "../support/manager-suite.js";

const HOUR = 3600_000;

describe("token manager: on-demand refresh and outages (real oidc-provider)", () => {
  const s = managerSuite();
  const { setup, get, rejects } = s;
  const refreshes = () => s.idp.stats.byGrantType.refresh_token;

  it("refreshWindowMs: 0 refreshes on demand only: no timer, no background refresh, one refresh when a call finds it expired", async () => {
    const { manager, clock, seen } = await setup({ refreshWindowMs: 0 });
    assert.equal(clock.pendingTimers, 0, "no timer armed");
    const before = refreshes();
    await clock.advance(2 * HOUR);
    assert.equal(refreshes() - before, 0, "nothing refreshed while idle");
    await get(manager);
    assert.equal(refreshes() - before, 1);
    assert.deepEqual(
      seen.filter((e) => e.type === "refreshed").map((e) => e.type === "refreshed" && e.reason),
      ["expired"],
    );
  });

  it("refreshWindowMs 0 while the IdP is down: no retries without a caller", async () => {
    const { manager, clock } = await setup({ refreshWindowMs: 0 });
    await clock.advance(HOUR + 1);
    s.idp.setTokenOutage(503);
    assert.ok((await rejects(manager.getAccessToken())) instanceof TokenRefreshError);
    const before = s.idp.stats.tokenRequests;
    for (let i = 0; i < 20; i += 1) {
      await clock.advance(60_000);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(s.idp.stats.tokenRequests, before, "nobody asked, nothing sent");
  });

  it("after a long outage, calls succeed within about a second of the IdP's return", async () => {
    const { manager, clock, seen } = await setup();
    s.idp.setTokenOutage(503);
    // Expired, backing off toward 60 s: 30 s at a time, each step's attempt answered before the next.
    for (let t = 0; t < HOUR + 10 * 60_000; t += 30_000) {
      await clock.advance(30_000);
      await new Promise((r) => setTimeout(r, 15));
    }
    const failures = seen.filter((e) => e.type === "refresh-failed").length;
    assert.ok(failures >= 5, `background attempts during the outage: ${failures}`);
    assert.ok((await rejects(manager.getAccessToken())) instanceof TokenRefreshError);
    s.idp.setTokenOutage(undefined);
    await clock.advance(1100);
    const token = await get(manager);
    assert.ok(token.length > 0);
    assert.ok(seen.some((e) => e.type === "refreshed"));
  });
});

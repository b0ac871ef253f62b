/**
 * `current()`: the token getAccessToken() would resolve with right now, without waiting, or
 * undefined when the caller must call getAccessToken(). A real manager against the real test
 * IdP, its time driven by the manual clock; every case also checks that current() asked
 * nobody (no token request, no store read) and threw nothing.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { memoryStore, ReauthRequiredError, type TokenManager, type TokenStore, TokenRefreshError } from "../../src/index.js";
import { managerSuite } from "../support/manager-suite.js";
import { createManualClock } from "../support/manual-clock.js";

const HOUR = 3600_000;

/** Bounded: fails with `what` when `condition` is not met within `timeoutMs` of real time. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A memory store that counts its reads. */
function countingStore(): TokenStore & { readonly loads: number } {
  const inner = memoryStore();
  let loads = 0;
  return {
    load: () => {
      loads += 1;
      return inner.load();
    },
    save: (tokens) => inner.save(tokens),
    clear: () => inner.clear(),
    get loads() {
      return loads;
    },
  };
}

describe("current(): the token at hand, without waiting", () => {
  const s = managerSuite({ accessTokenTtl: 3600 });
  const { leaks } = s;
  const refreshes = () => s.idp.stats.byGrantType.refresh_token;

  /** current(), which must not throw; the token it gives is kept for the leak scan. */
  const current = (manager: TokenManager): string | undefined => {
    let token: string | undefined;
    assert.doesNotThrow(() => {
      token = manager.current();
    });
    if (token !== undefined) leaks.remember(token);
    return token;
  };

  it("is undefined before the login is loaded, and reads no store for it", async () => {
    const store = countingStore();
    const { manager: writer } = await s.setup({ store }); // another manager stored a login
    writer.close();
    const manager = s.manage({ store, clock: createManualClock() });
    const loadsBefore = store.loads;
    assert.equal(current(manager), undefined);
    assert.equal(store.loads, loadsBefore, "current() read nothing");
    const token = await s.get(manager); // loads the stored login
    assert.equal(current(manager), token);
  });

  it("is the token while it is fresh, the same getAccessToken() resolves with, without a request", async () => {
    const { manager, login } = await s.setup();
    const before = refreshes();
    assert.equal(current(manager), login.access_token);
    assert.equal(await s.get(manager), login.access_token);
    assert.equal(refreshes(), before);
  });

  it("is undefined once the token has expired, and starts no refresh; after the refresh it is the new token", async () => {
    // refreshWindowMs 0: no background refresh, so the token simply expires.
    const { manager, clock, login } = await s.setup({ refreshWindowMs: 0 });
    await clock.advance(HOUR + 1);
    const before = refreshes();
    assert.equal(current(manager), undefined);
    await clock.advance(1000);
    assert.equal(refreshes(), before, "current() asked the identity provider nothing");
    const refreshed = await s.get(manager);
    assert.notEqual(refreshed, login.access_token);
    assert.equal(refreshes(), before + 1);
    assert.equal(current(manager), refreshed);
  });

  it("is the valid token while a proactive refresh runs, then the new token", async () => {
    const { manager, clock, seen, login } = await s.setup();
    s.idp.setTokenLatency(300);
    const before = refreshes();
    await clock.advance(HOUR - 10 * 60_000); // inside the refresh window: the timer starts a refresh
    assert.equal(current(manager), login.access_token, "still valid while the refresh is in flight");
    await waitFor("the proactive refresh", () => seen.some((e) => e.type === "refreshed"));
    assert.equal(refreshes() - before, 1);
    const next = current(manager);
    assert.ok(next !== undefined && next !== login.access_token, "the refreshed token");
    assert.equal(await s.get(manager), next);
  });

  it("is undefined while a refused token is being replaced (a forced refresh pending)", async () => {
    const { manager, seen, login } = await s.setup();
    s.idp.setTokenLatency(300);
    const replaced = s.get(manager, { rejected: login.access_token });
    assert.equal(current(manager), undefined, "the refused token is not handed out");
    const token = await replaced;
    assert.notEqual(token, login.access_token);
    assert.ok(seen.some((e) => e.type === "refreshed" && e.reason === "rejected"));
    assert.equal(current(manager), token);
  });

  it("is undefined while re-login is required, without asking the IdP or the store", async () => {
    const store = countingStore();
    const { manager, clock, seen } = await s.setup({ store });
    await s.idp.revokeGrant();
    await clock.advance(HOUR + 1);
    await waitFor("reauth-required", () => seen.some((e) => e.type === "reauth-required"));
    const [requests, loads] = [refreshes(), store.loads];
    assert.equal(current(manager), undefined);
    await clock.advance(10 * 60_000); // past the recheck interval: current() still reads nothing
    assert.equal(current(manager), undefined);
    assert.equal(refreshes(), requests);
    assert.equal(store.loads, loads);
    assert.ok((await s.rejects(manager.getAccessToken())) instanceof ReauthRequiredError);
  });

  it("is undefined after an expired token's refresh failed (backing off), the valid token before", async () => {
    const { manager, clock, login } = await s.setup({ refreshWindowMs: 0 });
    s.idp.setTokenOutage(503);
    assert.equal(current(manager), login.access_token);
    await clock.advance(HOUR + 1);
    assert.ok((await s.rejects(manager.getAccessToken())) instanceof TokenRefreshError);
    const before = refreshes();
    assert.equal(current(manager), undefined);
    assert.equal(refreshes(), before);
  });

  it("is undefined after close() and after signOut(), and never throws", async () => {
    const { manager: closing } = await s.setup();
    closing.close();
    assert.equal(current(closing), undefined);
    const { manager: leaving } = await s.setup();
    await leaving.signOut();
    assert.equal(current(leaving), undefined);
    // A store that throws on every read: current() never reads it, so nothing is thrown.
    const broken = s.manage({
      clock: createManualClock(),
      store: {
        load: () => {
          throw new Error("store down");
        },
        save: () => Promise.resolve(),
        clear: () => Promise.resolve(),
      },
    });
    assert.equal(current(broken), undefined);
  });
});

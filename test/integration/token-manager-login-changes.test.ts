/**
 * A login replaced, signed out or shared while the token manager works on it, against the
 * real oidc-provider (rotating refresh tokens, reuse revokes the grant): a refresh in flight
 * never hands out the old login's token, a store whose lock or save fails never brings a
 * replaced or signed-out login back, and one process's client-side refusal leaves the
 * shared login alone.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { memoryStore, ProviderConfigurationError, ReauthRequiredError, TokenStoreError, type TokenEvent } from "../../src/index.js";
import { managerSuite } from "../support/manager-suite.js";
import { createManualClock } from "../support/manual-clock.js";

const HOUR = 3600_000;

describe("token manager: a login replaced, signed out or shared (real oidc-provider)", () => {
  const s = managerSuite();
  const { leaks, manage, setup, get, rejects } = s;

  describe("a login replaced while a refresh is in flight", () => {
    it("signOut: neither a call made after it nor one waiting since before gets the old login's new token", async () => {
      const { manager, login } = await setup({ clock: undefined });
      s.idp.setTokenLatency(300);
      const waiting = manager.getAccessToken({ rejected: login.access_token }).then(
        (token) => ({ token }),
        (error: unknown) => ({ error }),
      );
      await new Promise((r) => setTimeout(r, 50));
      await manager.signOut();
      const after = await rejects(manager.getAccessToken());
      assert.ok(after instanceof ReauthRequiredError, String(after));
      const early = await waiting;
      assert.ok("error" in early && early.error instanceof ReauthRequiredError, "the waiting caller gets no token of the old login");
      await new Promise((r) => setTimeout(r, 400));
      assert.ok((await rejects(manager.getAccessToken())) instanceof ReauthRequiredError, "the late result was dropped");
    });

    it("setTokens of another login: calls get the new login's token, never the old one's refresh", async () => {
      const { manager, login } = await setup({ clock: undefined });
      // The other login is made first, so that it is set while the old login's refresh is
      // surely in flight (a login made meanwhile could take longer than the refresh under load).
      const other = await s.idp.login();
      leaks.remember(other.access_token, other.refresh_token);
      s.idp.setTokenLatency(300);
      const waiting = manager.getAccessToken({ rejected: login.access_token });
      await new Promise((r) => setTimeout(r, 50));
      await manager.setTokens(other);
      assert.equal(await get(manager), other.access_token);
      assert.equal(await waiting, other.access_token);
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(await get(manager), other.access_token, "the old login's late refresh did not replace it");
    });
  });

  describe("a store whose lock or save fails", () => {
    /** A memory store whose lock can be made to fail (a lock timeout), and whose saves can. */
    function flakyStore() {
      const inner = memoryStore();
      const faults = { lock: false, save: false };
      const store = {
        load: () => inner.load(),
        clear: () => inner.clear(),
        async save(t: Parameters<typeof inner.save>[0]) {
          if (faults.save) throw new TokenStoreError("io", "the token store cannot be written (disk full)");
          return inner.save(t);
        },
        lock<T>(fn: () => Promise<T>) {
          if (faults.lock) return Promise.reject(new TokenStoreError("lock-timeout", "gave up waiting for the lock"));
          return inner.lock!(fn);
        },
      };
      return { store, faults };
    }

    it("a setTokens whose lock fails: the store's previous login is never taken for a newer one", async () => {
      const { store, faults } = flakyStore();
      const { clock, login: previous } = await setup({ store }); // another login in the store
      const seenHere: TokenEvent[] = [];
      const m = manage({ clock, store }, seenHere);
      faults.lock = true;
      const other = await s.idp.login();
      leaks.remember(other.access_token, other.refresh_token);
      assert.ok((await rejects(m.setTokens(other))) instanceof TokenStoreError);
      faults.lock = false;
      const fresh = await get(m, { rejected: other.access_token });
      assert.notEqual(fresh, previous.access_token, "not the previous login's token");
      assert.notEqual(fresh, other.access_token);
      assert.ok(!seenHere.some((e) => e.type === "adopted"));
    });

    it("a signOut whose lock fails: the signed-out login does not come back on the next look at the store", async () => {
      const { store, faults } = flakyStore();
      const { manager, clock } = await setup({ store });
      faults.lock = true;
      assert.ok((await rejects(manager.signOut())) instanceof TokenStoreError);
      faults.lock = false;
      for (let i = 0; i < 3; i += 1) {
        await clock.advance(2000);
        assert.ok((await rejects(manager.getAccessToken())) instanceof ReauthRequiredError);
      }
    });

    it("after a failed save and a revoked grant, the re-login check does not adopt the stale stored login", async () => {
      const { store, faults } = flakyStore();
      const { manager, clock, seen, login } = await setup({ store });
      faults.save = true;
      await get(manager, { rejected: login.access_token }); // RT1 in memory, RT0 still stored
      await s.idp.revokeGrant();
      await clock.advance(HOUR + 1); // expired: the refresh meets invalid_grant
      assert.ok((await rejects(manager.getAccessToken())) instanceof ReauthRequiredError);
      const invalid = s.idp.stats.invalidGrant;
      for (let i = 0; i < 3; i += 1) {
        await clock.advance(2000);
        assert.ok((await rejects(manager.getAccessToken())) instanceof ReauthRequiredError);
      }
      assert.equal(s.idp.stats.invalidGrant, invalid, "the consumed refresh token was not sent again");
      assert.equal(seen.filter((e) => e.type === "reauth-required").length, 1);
      assert.ok(!seen.some((e) => e.type === "adopted"));
    });
  });

  it("a client-side refusal (invalid_client, invalid_scope) in one process leaves the shared login alone", async () => {
    const store = memoryStore();
    const { manager: good, login } = await setup({ store });
    for (const error of ["invalid_client", "invalid_scope"]) {
      const bad = manage({ store, clock: createManualClock() });
      // What a process with a wrong secret or a scope the client may not have is answered.
      s.idp.setTokenOutage(error === "invalid_client" ? 401 : 400, { body: { error }, headers: { "content-type": "application/json" } });
      assert.ok((await rejects(bad.getAccessToken({ rejected: login.access_token }))) instanceof ProviderConfigurationError);
      s.idp.setTokenOutage(undefined);
      assert.ok((await store.load())?.refreshToken !== undefined, `${error}: the refresh token is still stored`);
    }
    assert.notEqual(await get(good, { rejected: login.access_token }), login.access_token);
  });
});

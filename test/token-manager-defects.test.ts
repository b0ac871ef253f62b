/**
 * The token manager's defects found in review (issue 7), each as a user would meet it,
 * against the real oidc-provider (rotating refresh tokens, reuse revokes the grant) and,
 * where the call path matters, a real connect-node server through the interceptor.
 * Time is a manual clock with a wall reading that can step on its own.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { EchoService } from "../gen/connectoidc/test/v1/echo_pb.js";
import {
  ConfigurationError,
  createAuthInterceptor,
  createTokenManager,
  memoryStore,
  ProviderConfigurationError,
  ReauthRequiredError,
  TokenRefreshError,
  TokenStoreError,
  type TokenEvent,
  type TokenManager,
} from "../src/index.js";
import { fileStore } from "../src/node.js";
import { startIdp } from "./support/idp.js";
import { managerSuite } from "./support/manager-suite.js";
import { createManualClock } from "./support/manual-clock.js";
import { startServer, type TestServer } from "./support/server.js";

const HOUR = 3600_000;

describe("token manager: defects from review (real oidc-provider)", () => {
  const s = managerSuite();
  const { leaks, events, manage, setup, get, rejects } = s;
  const refreshes = () => s.idp.stats.byGrantType.refresh_token;

  // A manager of an older build has no accepted(); the test then fails on its assertions.
  const accepted = (m: TokenManager, token: string) => (m as Partial<TokenManager>).accepted?.(token);

  describe("1. revocations in a row", () => {
    it("a token a server accepted and then refuses is replaced at once, each time", async () => {
      const { manager, clock, login } = await setup();
      const before = refreshes();
      let token = login.access_token;
      for (let i = 0; i < 4; i += 1) {
        accepted(manager, token); // a call with it succeeded
        await clock.advance(2000); // then, 2 s later, a server refuses it (revoked)
        const next = await get(manager, { rejected: token });
        assert.notEqual(next, token, `revocation ${i + 1} got a new token`);
        token = next;
      }
      assert.equal(refreshes() - before, 4);
    });

    it("a server that refuses every token costs a bounded number of refreshes (1 s doubling to 60 s)", async () => {
      const { manager, clock, login } = await setup();
      const before = refreshes();
      let token = login.access_token;
      // A call every second for 2 min, each refused (never accepted).
      for (let second = 0; second < 120; second += 1) {
        token = await get(manager, { rejected: token });
        await clock.advance(1000);
      }
      const n = refreshes() - before;
      // Forced refreshes at about 0, 1, 3, 7, 15, 31, 63 s (and 123 s): 7 in 2 min.
      assert.ok(n >= 6 && n <= 8, `forced refreshes in 2 min: ${n}`);
    });

    describe("through the interceptor, on a real server", () => {
      let h1: TestServer;
      let h2: TestServer;
      before(async () => {
        h1 = await startServer({ idp: s.idp, http2: false });
        h2 = await startServer({ idp: s.idp, http2: true });
      });
      after(async () => {
        await h1.close();
        await h2.close();
      });

      const transports = {
        "connect-h2": () => ({ server: h2, make: createConnectTransport, options: { baseUrl: h2.baseUrl, httpVersion: "2" as const } }),
        grpc: () => ({ server: h2, make: createGrpcTransport, options: { baseUrl: h2.baseUrl } }),
        "grpc-web": () => ({ server: h1, make: createGrpcWebTransport, options: { baseUrl: h1.baseUrl, httpVersion: "1.1" as const } }),
      };
      for (const [kind, pick] of Object.entries(transports)) {
        it(`${kind}: a second revocation within seconds recovers within its call's one retry (unary, server stream, upload)`, async () => {
          const { server, make, options } = pick();
          const { manager } = await setup({ clock: undefined });
          const client = createClient(EchoService, make({ ...options, interceptors: [createAuthInterceptor(manager)] } as never));
          const revokeCurrent = async () => server.revoke(await get(manager));
          await client.say({ text: "first" });
          for (let i = 0; i < 3; i += 1) {
            await revokeCurrent();
            assert.equal((await client.say({ text: `after revocation ${i}` })).text, `after revocation ${i}`);
            await revokeCurrent();
            const counted: number[] = [];
            for await (const m of client.countdown({ text: "c", count: 3 })) counted.push(m.count);
            assert.deepEqual(counted, [3, 2, 1]);
            if (kind !== "grpc-web") {
              await revokeCurrent();
              // An upload cannot be re-sent: the first fails, its refusal is reported, the next succeeds.
              const upload = async function* () {
                yield { text: "a" };
                yield { text: "b" };
              };
              const failed = await rejects(client.collect(upload()));
              assert.equal(ConnectError.from(failed).code, Code.Unauthenticated);
              await new Promise((r) => setTimeout(r, 50)); // the reported refusal's refresh
              assert.equal((await client.collect(upload())).count, 2);
            }
          }
        });
      }
    });
  });

  describe("2. token material in error causes", () => {
    for (const [name, fault] of [
      ["a negative expires_in", { expires_in: -5 }],
      ["an unknown token_type", { token_type: "weird" }],
    ] as const) {
      it(`a 200 answer with ${name}: no token in any cause; the rotated refresh token is kept, the login goes on`, async () => {
        const { manager, clock, seen, login } = await setup();
        const answered: string[] = [];
        s.idp.rewriteTokenResponse((body) => {
          answered.push(String(body.access_token), String(body.refresh_token));
          return { ...body, ...fault };
        });
        const invalidBefore = s.idp.stats.invalidGrant;
        const error = await rejects(manager.getAccessToken({ rejected: login.access_token }));
        leaks.remember(...answered);
        assert.ok(error instanceof TokenRefreshError, String(error));
        assert.equal(answered.length, 2, "the real IdP answered (and rotated the refresh token)");
        for (const text of [inspect(error, { depth: Number.POSITIVE_INFINITY }), inspect(seen, { depth: Number.POSITIVE_INFINITY })]) {
          for (const secret of answered) assert.ok(!text.includes(secret), "a token from the rejected answer leaked");
        }
        leaks.assertClean(error, "TokenRefreshError");
        for (const e of seen) leaks.assertClean(e, `event ${e.type}`);
        // The interceptor's error carries the same token-free cause.
        const server = await startServer({ idp: s.idp, http2: false });
        try {
          const client = createClient(
            EchoService,
            createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(manager)] }),
          );
          server.revoke(login.access_token);
          const callError = await rejects(client.say({ text: "x" }));
          for (const secret of answered) assert.ok(!inspect(callError, { depth: Number.POSITIVE_INFINITY }).includes(secret));
        } finally {
          await server.close();
        }
        // The provider is fixed: the next attempt uses the rotated refresh token, not the consumed one.
        s.idp.rewriteTokenResponse(undefined);
        await clock.advance(1500);
        const fresh = await get(manager, { rejected: login.access_token });
        assert.notEqual(fresh, login.access_token);
        assert.equal(s.idp.stats.invalidGrant, invalidBefore, "no invalid_grant: the consumed refresh token was not presented");
      });
    }
  });

  describe("3. a login replaced while a refresh is in flight", () => {
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
      s.idp.setTokenLatency(300);
      const waiting = manager.getAccessToken({ rejected: login.access_token });
      await new Promise((r) => setTimeout(r, 50));
      const other = await (async () => {
        s.idp.setTokenLatency(0);
        const l = await s.idp.login();
        leaks.remember(l.access_token, l.refresh_token);
        return l;
      })();
      await manager.setTokens(other);
      assert.equal(await get(manager), other.access_token);
      assert.equal(await waiting, other.access_token);
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(await get(manager), other.access_token, "the old login's late refresh did not replace it");
    });
  });

  describe("4. wall-clock steps", () => {
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

  it("5. an IdP that returns the same access token again: later ordinary calls do not refresh", async () => {
    const { manager, login } = await setup();
    s.idp.rewriteTokenResponse((body) => ({ ...body, access_token: login.access_token }));
    const before = refreshes();
    assert.equal(await get(manager, { rejected: login.access_token }), login.access_token);
    s.idp.rewriteTokenResponse(undefined);
    for (let i = 0; i < 10; i += 1) assert.equal(await get(manager), login.access_token);
    assert.equal(refreshes() - before, 1, "one forced refresh, no refresh for the 10 calls after it");
  });

  it("6. a report of an old token returns the current one, also just after a forced refresh", async () => {
    const shortIdp = await startIdp({ accessTokenTtl: 8 });
    try {
      const clock = createManualClock();
      const manager = createTokenManager({
        issuer: shortIdp.issuer,
        clientId: shortIdp.clientId,
        allowInsecureRequests: true,
        clock,
        onEvent: (e) => events.push(e),
      });
      s.keep(manager);
      const login = await shortIdp.login();
      leaks.remember(login.access_token, login.refresh_token);
      await manager.setTokens(login);
      const t2 = await get(manager, { rejected: login.access_token }); // forced
      await clock.advance(5500); // T2's window (25 % of 8 s): the timer refreshes it
      await waitFor(async () => (await get(manager)) !== t2);
      const t3 = await get(manager);
      assert.equal(await get(manager, { rejected: t2 }), t3, "a refusal of T2 while T3 is current returns T3");
    } finally {
      await shortIdp.close();
    }
  });

  describe("10. values validated at the door", () => {
    it("setTokens refuses what the store would read back as corrupt", async () => {
      const m = manage({ clock: createManualClock() });
      for (const bad of [
        { access_token: "a".repeat(20), refresh_token: 42 },
        { access_token: "a".repeat(20), expires_in: "soon" },
        { access_token: "a".repeat(20), scope: ["api"] },
        { access_token: "" },
      ]) {
        const error = await rejects(m.setTokens(bad as never));
        assert.ok(error instanceof ConfigurationError, `${JSON.stringify(Object.keys(bad))}: ${String(error)}`);
      }
    });

    it("a huge expires_in (login or refresh) is stored as a date the store reads back", async () => {
      const dir = await mkdtemp(join(tmpdir(), "connect-oidc-defects-"));
      try {
        const path = join(dir, "tokens.json");
        const clock = createManualClock();
        const a = manage({ clock, store: fileStore(path) });
        const login = await s.idp.login();
        leaks.remember(login.access_token, login.refresh_token);
        await a.setTokens({ ...login, expires_in: 1e306 });
        const b = manage({ clock, store: fileStore(path) });
        assert.equal(await get(b), login.access_token, "the stored login reads back");
        s.idp.rewriteTokenResponse((body) => ({ ...body, expires_in: 1.8e305 }));
        const fresh = await get(b, { rejected: login.access_token });
        const c = manage({ clock, store: fileStore(path) });
        assert.equal(await get(c), fresh);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  it("13. refreshWindowMs: 0 refreshes on demand only: no timer, no background refresh, one refresh when a call finds it expired", async () => {
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

  it("14. after a long outage, calls succeed within about a second of the IdP's return", async () => {
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

  describe("found in review of the rewrite", () => {
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

    it("a sliding refresh lifetime (refresh_expires_in restated at every refresh): login-expiring once", async () => {
      const { manager, clock, seen, login } = await setup();
      s.idp.rewriteTokenResponse((body) => ({ ...body, refresh_expires_in: 30 * 60 }));
      let token = login.access_token;
      for (let i = 0; i < 4; i += 1) {
        token = await get(manager, { rejected: token });
        accepted(manager, token);
        await clock.advance(5 * 60_000);
      }
      assert.equal(seen.filter((e) => e.type === "login-expiring").length, 1);
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
  });
});

async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * What the token manager does when a server refuses a token it handed out, as a user's calls
 * meet it: against the real oidc-provider (rotating refresh tokens, reuse revokes the grant)
 * and, where the call path matters, a real connect-node server through the interceptor.
 * Time is a manual clock, except where a real server call needs real time.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, type TokenManager } from "../../src/index.js";
import { startIdp } from "../support/idp.js";
import { managerSuite } from "../support/manager-suite.js";
import { createManualClock } from "../support/manual-clock.js";
import { startServer, type TestServer } from "../support/server.js";

describe("token manager: a token a server refuses (real oidc-provider)", () => {
  const s = managerSuite();
  const { leaks, events, setup, get, rejects } = s;
  const refreshes = () => s.idp.stats.byGrantType.refresh_token;

  // A manager of an older build has no accepted(); the test then fails on its assertions.
  const accepted = (m: TokenManager, token: string) => (m as Partial<TokenManager>).accepted?.(token);

  describe("revocations in a row", () => {
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

  it("an IdP that returns the same access token again: later ordinary calls do not refresh", async () => {
    const { manager, login } = await setup();
    s.idp.rewriteTokenResponse((body) => ({ ...body, access_token: login.access_token }));
    const before = refreshes();
    assert.equal(await get(manager, { rejected: login.access_token }), login.access_token);
    s.idp.rewriteTokenResponse(undefined);
    for (let i = 0; i < 10; i += 1) assert.equal(await get(manager), login.access_token);
    assert.equal(refreshes() - before, 1, "one forced refresh, no refresh for the 10 calls after it");
  });

  it("a token accepted again after a forced refresh gave it back unchanged: its next refusal is answered at once", async () => {
    const { manager, login } = await setup();
    const token = login.access_token;
    accepted(manager, token);
    s.idp.rewriteTokenResponse((body) => ({ ...body, access_token: token }));
    const before = refreshes();
    assert.equal(await get(manager, { rejected: token }), token, "the forced refresh got the same token back");
    s.idp.rewriteTokenResponse(undefined);
    accepted(manager, token); // a server took it after all: the same report as before, in another state
    const next = await get(manager, { rejected: token }); // and refuses it a moment later
    assert.notEqual(next, token);
    assert.equal(refreshes() - before, 2, "two forced refreshes, the second without a pause");
  });

  it("a report of an old token returns the current one, also just after a forced refresh", async () => {
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
});

async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

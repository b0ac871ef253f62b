/**
 * The auth interceptor end to end: a real oidc-provider, real connect-node servers
 * (HTTP/1.1 and HTTP/2), generated stubs, and every transport a user would pick.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import { Code, createClient, type Client, type Transport } from "@connectrpc/connect";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import {
  createAuthInterceptor,
  createTokenManager,
  memoryStore,
  ReauthRequiredError,
  type TokenEvent,
  type TokenManager,
} from "../../src/index.js";
import { startIdp, type Idp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock, type ManualClock } from "../support/manual-clock.js";
import { hashToken, startServer, type RecordedRequest, type TestServer } from "../support/server.js";
import { hasBidi, KINDS, serverFor, transportFor, webOnly } from "../support/transports.js";
import { refusalOf } from "../support/refusal.js";

const HOUR = 3600_000;

describe("auth interceptor (real IdP, real servers)", () => {
  let idp: Idp;
  let h1: TestServer;
  let h2: TestServer;
  const leaks = createLeakScanner();
  const errors: unknown[] = [];
  const events: TokenEvent[] = [];

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 3600 });
    h1 = await startServer({ idp, http2: false });
    h2 = await startServer({ idp, http2: true });
  });
  after(async () => {
    assert.ok(leaks.count > 0);
    for (const e of events) leaks.assertClean(e, `event ${e.type}`);
    for (const e of errors) leaks.assertClean(e, "error");
    await h1.close();
    await h2.close();
    await idp.close();
  });

  for (const kind of KINDS) {
    describe(kind, () => {
      let server: TestServer;
      let clock: ManualClock;
      let manager: TokenManager;
      let client: Client<typeof EchoService>;
      let login: Awaited<ReturnType<Idp["login"]>>;

      const transport = (m: TokenManager, options: { retry?: boolean } = {}): Transport =>
        transportFor(kind, h1, h2, [createAuthInterceptor(m, options)]);

      beforeEach(async () => {
        server = serverFor(kind, h1, h2);
        server.resetStats();
        server.setRejectAll(false);
        idp.setTokenLatency(0);
        clock = createManualClock();
        manager?.close();
        manager = createTokenManager({
          issuer: idp.issuer,
          clientId: idp.clientId,
          allowInsecureRequests: true,
          clock,
          onEvent: (e) => events.push(e),
        });
        login = await idp.login();
        leaks.remember(login.access_token, login.refresh_token, login.id_token as string | undefined);
        await manager.setTokens(login);
        client = createClient(EchoService, transport(manager));
      });

      const refreshes = () => idp.stats.byGrantType.refresh_token;
      // The server's record of the requests of one call, found by a marker in the body.
      const requestsOf = async (marker: string): Promise<RecordedRequest[]> => {
        const all = server.stats.requests;
        await Promise.all(all.map((r) => r.done));
        return all.filter((r) => Buffer.from(r.body).includes(Buffer.from(marker)));
      };
      const fails = refusalOf(errors);

      it("puts the bearer token on the call", async () => {
        const marker = randomUUID();
        const res = await client.say({ text: marker });
        assert.equal(res.subject, idp.accountId);
        const [req] = await requestsOf(marker);
        assert.equal(req?.tokenHash, hashToken(login.access_token));
        assert.equal(req?.auth, "accepted");
      });

      it("leaves a request that already has an authorization header alone", async () => {
        const before = refreshes();
        const marker = randomUUID();
        const error = await fails(client.say({ text: marker }, { headers: { authorization: "Bearer not-a-token" } }));
        assert.equal(error.code, Code.Unauthenticated);
        assert.equal((await requestsOf(marker)).length, 1, "no retry");
        assert.equal(refreshes(), before, "no refresh");
      });

      it("after server-side revocation: one refresh, the same body bytes re-sent once", async () => {
        server.revoke(login.access_token);
        const before = refreshes();
        const marker = randomUUID();
        const payload = randomBytes(64 * 1024);
        const res = await client.say({ text: marker, payload });
        assert.equal(res.subject, idp.accountId);
        assert.deepEqual(Buffer.from(res.payload), payload);
        assert.equal(refreshes() - before, 1);
        const reqs = await requestsOf(marker);
        assert.deepEqual(
          reqs.map((r) => r.auth),
          ["rejected", "accepted"],
        );
        assert.ok(reqs[0]!.body.length > 64 * 1024);
        assert.deepEqual(Buffer.from(reqs[1]!.body), Buffer.from(reqs[0]!.body), "identical body bytes on both attempts");
        assert.notEqual(reqs[1]!.tokenHash, reqs[0]!.tokenHash);
      });

      it("100 concurrent 401s make exactly one refresh", async () => {
        server.revoke(login.access_token);
        idp.setTokenLatency(50);
        const before = refreshes();
        const results = await Promise.all(Array.from({ length: 100 }, (_, i) => client.say({ text: `c${i}` })));
        assert.equal(results.length, 100);
        assert.equal(refreshes() - before, 1);
        const accepted = server.stats.requests.filter((r) => r.auth === "accepted");
        assert.equal(new Set(accepted.map((r) => r.tokenHash)).size, 1, "every retry used the one new token");
      });

      it("200 concurrent calls at expiry make exactly one refresh", async () => {
        // The login was stored two hours ago (on the managers' clocks): its token has expired.
        const store = memoryStore();
        const then = createManualClock();
        const seed = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, clock: then, store });
        await seed.setTokens(login);
        seed.close();
        const late = createTokenManager({
          issuer: idp.issuer,
          clientId: idp.clientId,
          allowInsecureRequests: true,
          clock: createManualClock(then.now() + 2 * HOUR),
          store,
          onEvent: (e) => events.push(e),
        });
        const c = createClient(EchoService, transport(late));
        const before = refreshes();
        const results = await Promise.all(Array.from({ length: 200 }, (_, i) => c.say({ text: `e${i}` })));
        late.close();
        assert.equal(results.length, 200);
        assert.equal(refreshes() - before, 1);
        assert.equal(server.stats.requests.filter((r) => r.auth === "rejected").length, 0, "no call was sent with the expired token");
      });

      it("a server that always rejects sees at most 2 attempts per call, and the IdP no storm", async () => {
        server.setRejectAll(true);
        const before = refreshes();
        for (let i = 0; i < 10; i += 1) {
          const marker = randomUUID();
          const error = await fails(client.say({ text: marker }));
          assert.equal(error.code, Code.Unauthenticated);
          assert.ok((await requestsOf(marker)).length <= 2);
          if (i === 0) assert.equal((await requestsOf(marker)).length, 2, "the first call retries once");
        }
        assert.equal(refreshes() - before, 1, "one forced refresh, not one per call");
      });

      it("retry: false sends once and still reports the refusal", async () => {
        const c = createClient(EchoService, transport(manager, { retry: false }));
        server.revoke(login.access_token);
        const before = refreshes();
        const marker = randomUUID();
        assert.equal((await fails(c.say({ text: marker }))).code, Code.Unauthenticated);
        assert.equal((await requestsOf(marker)).length, 1);
        await waitFor(() => refreshes() - before === 1);
        assert.equal((await c.say({ text: "next" })).subject, idp.accountId);
      });

      it("server-streaming: Unauthenticated before the first message re-sends the request once", async () => {
        server.revoke(login.access_token);
        const marker = randomUUID();
        const payload = randomBytes(4096);
        const counts: number[] = [];
        for await (const m of client.countdown({ text: marker, payload, count: 3 })) counts.push(m.count);
        assert.deepEqual(counts, [3, 2, 1]);
        const reqs = await requestsOf(marker);
        assert.deepEqual(
          reqs.map((r) => r.auth),
          ["rejected", "accepted"],
        );
        assert.deepEqual(Buffer.from(reqs[1]!.body), Buffer.from(reqs[0]!.body));
      });

      it("server-streaming: Unauthenticated after messages arrived is not retried", async () => {
        server.setUnauthenticatedAfter(2);
        try {
          const marker = randomUUID();
          const counts: number[] = [];
          const error = await fails(
            (async () => {
              for await (const m of client.countdown({ text: marker, count: 5 })) counts.push(m.count);
            })(),
          );
          assert.equal(error.code, Code.Unauthenticated);
          assert.deepEqual(counts, [5, 4]);
          assert.equal((await requestsOf(marker)).length, 1);
        } finally {
          server.setUnauthenticatedAfter(undefined);
        }
      });

      if (!webOnly(kind)) {
        it("client-streaming: never re-sent, but the next call gets a fresh token", async () => {
          server.revoke(login.access_token);
          const before = refreshes();
          const marker = randomUUID();
          async function* messages() {
            yield { text: marker };
            yield { text: "second" };
          }
          assert.equal((await fails(client.collect(messages()))).code, Code.Unauthenticated);
          assert.equal((await requestsOf(marker)).length, 1, "not re-sent");
          await waitFor(() => refreshes() - before === 1);
          const next = randomUUID();
          assert.equal((await client.say({ text: next })).subject, idp.accountId);
          assert.deepEqual(
            (await requestsOf(next)).map((r) => r.auth),
            ["accepted"],
            "the next call needed no retry",
          );
        });

        if (hasBidi(kind))
          it("bidi: never re-sent, but the refusal is reported", async () => {
            server.revoke(login.access_token);
            const before = refreshes();
            const marker = randomUUID();
            async function* messages() {
              yield { text: marker };
            }
            const error = await fails(
              (async () => {
                for await (const _ of client.chat(messages())) {
                  // drain
                }
              })(),
            );
            assert.equal(error.code, Code.Unauthenticated);
            assert.equal((await requestsOf(marker)).length, 1);
            await waitFor(() => refreshes() - before === 1);
          });
      }

      it("without a login the call fails with Unauthenticated naming what to do, and is not sent", async () => {
        await manager.signOut();
        const marker = randomUUID();
        const error = await fails(client.say({ text: marker }));
        assert.equal(error.code, Code.Unauthenticated);
        assert.ok(error.cause instanceof ReauthRequiredError);
        assert.match(error.message, /log in/);
        assert.equal((await requestsOf(marker)).length, 0);
      });

      it("the caller's signal ends a wait for a slow refresh at once", async () => {
        server.revoke(login.access_token);
        idp.setTokenLatency(3000);
        const controller = new AbortController();
        const t0 = performance.now();
        setTimeout(() => controller.abort(), 100);
        const error = await fails(client.say({ text: "slow" }, { signal: controller.signal }));
        const elapsed = performance.now() - t0;
        assert.equal(error.code, Code.Canceled);
        assert.ok(elapsed < 1000, `took ${elapsed} ms`);
        // The refresh itself goes on for other callers; let it land before the next test counts.
        await manager.getAccessToken();
      });
    });
  }
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

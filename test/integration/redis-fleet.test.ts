/**
 * A fleet sharing one login through Redis (issue 10): OS processes, each with its own Redis
 * connection and token manager (test/support/redis-worker.ts), call a real Connect server
 * with tokens from a real oidc-provider, through a real redis-server that the tests start,
 * restart and stop. Client credentials and rotating refresh tokens; a lease holder
 * SIGKILLed, one SIGSTOPped past its lease and continued, Redis restarted and unreachable.
 *
 * Figures are printed as test diagnostics. Without redis-server the tests skip, except in
 * CI, where they fail. Reproduce: node --import tsx --test test/integration/redis-fleet.test.ts
 */
import assert from "node:assert/strict";
import { after, describe, test, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { createTokenManager, type TokenEvent, TokenStoreError } from "../../src/index.js";
import { redisStore } from "../../src/redis.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { formatCounts, refreshedCount, totals } from "../support/process-fleet.js";
import { FLEET_KEY, startFleet, startMachine, stopFleet, storeLogin, workerConfig } from "../support/redis-fleet.js";
import { type RedisServer, redisServerMissing, startRedisServer } from "../support/redis-server.js";
import type { RedisWorkerReport, WorkerConfig } from "../support/redis-worker.js";
import { startServer, type TestServer } from "../support/server.js";

const missing = redisServerMissing();
if (missing !== undefined && process.env.CI === "true") {
  test("redis-server is available in CI", () => assert.fail(missing));
}

const TTL_S = 3;
// A token is refreshed at 65 % of its life (usable until 90 %, minus a window of 25 %).
const PERIOD_MS = TTL_S * 1000 * 0.65;
const LEASE_MS = 1_000;

after(stopFleet);

interface World {
  readonly idp: Idp;
  readonly server: TestServer;
  readonly redis: RedisServer;
  /** A worker configuration for this world: client credentials unless `grant` says otherwise. */
  config(overrides?: Partial<WorkerConfig>): WorkerConfig;
  /** Stores a fresh login (rotating refresh tokens) in the key, as a `login` command would. */
  login(): Promise<void>;
}

async function world(t: TestContext, redisOptions: { appendOnly?: boolean } = {}): Promise<World> {
  const idp = await startIdp({ accessTokenTtl: TTL_S, rotateRefreshTokens: true });
  const [server, redis] = await Promise.all([startServer({ idp, http2: false }), startRedisServer(redisOptions)]);
  t.after(async () => {
    await stopFleet();
    await Promise.all([server.close(), idp.close(), redis.close()]);
  });
  return {
    idp,
    server,
    redis,
    config: (overrides = {}) => workerConfig({ idp, server: server.baseUrl, redisUrl: redis.url }, { leaseMs: LEASE_MS, ...overrides }),
    login: () => storeLogin(idp, redis.url),
  };
}

/** Token requests of `grant` per token period over the fleet's run, and a one-line summary. */
function figures(idp: Idp, reports: readonly RedisWorkerReport[], grant: WorkerConfig["grant"]) {
  const sum = totals(reports);
  const requests = idp.stats.byGrantType[grant] ?? 0;
  const periods = sum.elapsedMs / PERIOD_MS;
  const reasons: Record<string, number> = {};
  for (const r of reports) for (const [k, v] of Object.entries(r.reasons)) reasons[k] = (reasons[k] ?? 0) + v;
  const line =
    `N=${reports.length}, ${(sum.elapsedMs / 1000).toFixed(1)} s (≈ ${periods.toFixed(1)} token periods): calls=${sum.calls} ` +
    `failures=${sum.failures} (${formatCounts(sum.failureCodes)}), ${grant} requests=${requests} (${(requests / periods).toFixed(2)} per period), ` +
    `invalid_grant=${idp.stats.invalidGrant}, events: ${formatCounts(sum.events)}, store reasons: ${formatCounts(reasons)}, max call ${sum.maxCallMs} ms`;
  return { sum, requests, periods, perPeriod: requests / periods, reasons, line };
}

/** Events named like `prefix` in `reports`' timelines at or after `from` (epoch ms), in time order. */
const eventsSince = (reports: readonly RedisWorkerReport[], prefix: string, from: number) =>
  reports
    .flatMap((r) => r.timeline)
    .filter((e) => e.event.startsWith(prefix) && e.at >= from)
    .sort((a, b) => a.at - b.at);

describe("a fleet sharing one login through Redis", { skip: missing }, () => {
  test("client credentials, 8 machines: about one token request per period for the fleet (8 without the store)", async (t) => {
    const w = await world(t);
    const shared = await startFleet(Array.from({ length: 8 }, () => w.config()));
    w.idp.resetStats();
    shared.go();
    const ours = figures(w.idp, await shared.reports(), "client_credentials");
    t.diagnostic(`redisStore: ${ours.line}`);

    const alone = await startFleet(Array.from({ length: 8 }, () => w.config({ store: "memory", durationMs: 6_000 })));
    w.idp.resetStats();
    alone.go();
    const baseline = figures(w.idp, await alone.reports(), "client_credentials");
    t.diagnostic(`without a shared store: ${baseline.line}`);

    assert.equal(ours.sum.failures, 0, `failed calls: ${formatCounts(ours.sum.failureCodes)}`);
    assert.equal(ours.requests, refreshedCount(ours.sum.events), "every token request is a refresh some machine reported");
    assert.ok(ours.perPeriod <= 1.5, `${ours.perPeriod.toFixed(2)} requests per period`);
    assert.ok(ours.requests >= Math.floor(ours.periods * 0.7), `tokens were renewed: ${ours.requests}`);
    assert.ok(baseline.perPeriod >= 6, `the baseline asks per machine: ${baseline.perPeriod.toFixed(2)} per period`);
  });

  test("rotating refresh tokens, 8 machines: 0 invalid_grant, 0 failed calls, about one refresh per period", async (t) => {
    const w = await world(t);
    const fleet = await startFleet(Array.from({ length: 8 }, () => w.config({ grant: "refresh_token" })));
    await w.login();
    w.idp.resetStats();
    fleet.go();
    const reports = await fleet.reports();
    const ours = figures(w.idp, reports, "refresh_token");
    t.diagnostic(`redisStore: ${ours.line}`);
    assert.equal(ours.sum.failures, 0, `failed calls: ${formatCounts(ours.sum.failureCodes)}`);
    assert.equal(w.idp.stats.invalidGrant, 0, "no refresh token used twice");
    assert.ok(ours.perPeriod <= 1.5, `${ours.perPeriod.toFixed(2)} refreshes per period`);
    assert.ok(ours.requests >= Math.floor(ours.periods * 0.7), `tokens were refreshed: ${ours.requests}`);
    // Each refresh is adopted by the others when their own refresh comes due, about a period
    // later: one made within the run's last period has nobody left to adopt it.
    const end = Math.min(...reports.map((r) => r.endedAt));
    const adoptable = reports.flatMap((r) => r.timeline).filter((e) => e.event.startsWith("refreshed:") && e.at <= end - PERIOD_MS);
    assert.ok(adoptable.length >= Math.floor(ours.periods) - 2, `refreshes a period before the end: ${adoptable.length}`);
    assert.ok(
      (ours.sum.events.adopted ?? 0) >= 6 * adoptable.length,
      `the others adopted what one stored: ${ours.sum.events.adopted ?? 0} adoptions of ${adoptable.length} refreshes made a period before the end`,
    );
  });

  test("a lease holder SIGKILLed inside its refresh: another takes over after the lease, nobody fails", async (t) => {
    const w = await world(t);
    const victim = startMachine(w.config({ grant: "refresh_token", durationMs: 60_000 }));
    const fleet = await startFleet(Array.from({ length: 4 }, () => w.config({ grant: "refresh_token" })));
    await victim.line("ready");
    await w.login();
    w.idp.resetStats();
    // The victim alone first: its proactive refresh takes the lease and hangs at the IdP.
    w.idp.setTokenLatency(60_000, { phase: "before" });
    victim.send("go");
    const due = Date.now() + TTL_S * 1000 + 5_000;
    while (w.idp.stats.tokenRequests === 0 && Date.now() < due) await sleep(10);
    assert.equal(w.idp.stats.tokenRequests, 1, "the victim is inside its refresh");
    fleet.go();
    await sleep(300);
    victim.child.kill("SIGKILL");
    const killedAt = Date.now();
    w.idp.setTokenLatency(0);
    const reports = await fleet.reports();
    const ours = figures(w.idp, reports, "refresh_token");
    const takeover = eventsSince(reports, "refreshed:", killedAt)[0]?.at;
    t.diagnostic(
      `redisStore, 4 machines + 1 SIGKILLed holding the lease: ${ours.line}; first refresh by another ${takeover! - killedAt} ms after the kill (lease ${LEASE_MS} ms)`,
    );
    assert.ok(takeover !== undefined, "another machine refreshed");
    assert.ok(takeover - killedAt <= LEASE_MS + 1_500, `took over ${takeover - killedAt} ms after the kill`);
    assert.equal(ours.sum.failures, 0, `failed calls: ${formatCounts(ours.sum.failureCodes)}`);
    assert.equal(w.idp.stats.invalidGrant, 0, "the victim's refresh token was never used twice");
  });

  const outcomes = {
    "before-save": "its save is fenced off",
    "in-lock": "no refresh under the lost lease",
    "after-read": "it never sends the refresh token it read (the lease is confirmed right before the request)",
  };
  for (const [grant, stall] of [
    ["client_credentials", "before-save"],
    ["refresh_token", "in-lock"],
    ["refresh_token", "after-read"],
  ] as const) {
    test(`${grant}: a holder SIGSTOPped past its lease (${stall}), then continued: ${outcomes[stall]}; nothing is lost`, async (t) => {
      const w = await world(t);
      const victim = startMachine(w.config({ grant, stall, durationMs: 12_000 }));
      const fleet = await startFleet(Array.from({ length: 3 }, () => w.config({ grant, durationMs: 9_000 })));
      await victim.line("ready");
      if (grant === "refresh_token") await w.login();
      const client = new Redis(w.redis.url);
      t.after(() => client.disconnect());
      const versionBefore = Number((await client.hget(FLEET_KEY, "version")) ?? 0);
      w.idp.resetStats();
      victim.send("go");
      await victim.line("stalling");
      victim.child.kill("SIGSTOP");
      const stoppedAt = Date.now();
      fleet.go();
      // Stopped for three leases, while the others take the lease and store newer logins.
      await sleep(3 * LEASE_MS);
      // Continued just after the others' latest write: the lease is free again (a refresh is
      // due only a token period later), as it is for most of a period.
      const version = async () => Number(await client.hget(FLEET_KEY, "version"));
      const seen = await version();
      const due = Date.now() + 3 * PERIOD_MS;
      while ((await version()) === seen && Date.now() < due) await sleep(20);
      await sleep(100);
      const versionMeanwhile = await version();
      victim.child.kill("SIGCONT");
      victim.send("resume");
      const resumedAt = Date.now();
      const [line, others] = await Promise.all([victim.line("report"), fleet.reports()]);
      const report = line as unknown as RedisWorkerReport;
      const all = [report, ...others];
      const ours = figures(w.idp, all, grant);
      t.diagnostic(
        `redisStore, 3 machines + 1 stopped ${resumedAt - stoppedAt} ms (lease ${LEASE_MS} ms): ${ours.line}; ` +
          `key version ${versionBefore} → ${versionMeanwhile} while stopped; the stopped machine: reasons ${formatCounts(report.reasons)}, events ${formatCounts(report.events)}`,
      );
      assert.ok(versionMeanwhile > versionBefore, "the others stored newer logins while the victim was stopped");
      if (stall === "before-save") {
        assert.equal(report.reasons.fenced, 1, "the continued machine's save under the lost lease was refused");
        assert.equal(ours.sum.failures, 0, `failed calls: ${formatCounts(ours.sum.failureCodes)}`);
      } else if (stall === "after-read") {
        // Others wrote while it was stopped: its confirmation before the request fails, and it
        // adopts the newer login they stored instead of sending the refresh token it read.
        assert.equal(report.reasons["confirm:fenced"], 1, "the continued machine found its lease lost before its request");
        assert.equal(ours.sum.failures, 0, `failed calls: ${formatCounts(ours.sum.failureCodes)}`);
      } else {
        // Its read takes the lapsed lease again, unless another machine holds it at that moment:
        // then the read is refused and the refresh retried (calls wait or fail meanwhile).
        const others = all.slice(1);
        assert.equal(totals(others).failures, 0, `failed calls: ${formatCounts(totals(others).failureCodes)}`);
        if ((report.reasons.fenced ?? 0) === 0) assert.equal(report.failures, 0, `failed calls: ${formatCounts(report.failureCodes)}`);
        else assert.deepEqual(Object.keys(report.failureCodes), ["Unauthenticated/ERR_TOKEN_REFRESH/fenced"]);
      }
      assert.equal(w.idp.stats.invalidGrant, 0);
      assert.ok(eventsSince([report], "adopted", resumedAt).length >= 1, "the continued machine adopted the newer login");
    });
  }

  test("Redis restarted mid-run: without persistence client credentials go on; with AOF rotating refresh tokens too", async (t) => {
    for (const [grant, appendOnly] of [
      ["client_credentials", false],
      ["refresh_token", true],
    ] as const) {
      const w = await world(t, { appendOnly });
      const fleet = await startFleet(Array.from({ length: 4 }, () => w.config({ grant })));
      if (grant === "refresh_token") await w.login();
      w.idp.resetStats();
      fleet.go();
      await sleep(3_000);
      // Killed and started again at once (a crash and its supervisor): shorter than the
      // refresh window, so a refresh that fails meanwhile is retried before the token runs out.
      await w.redis.stop();
      await w.redis.start();
      const restartedAt = Date.now();
      const reports = await fleet.reports();
      const ours = figures(w.idp, reports, grant);
      t.diagnostic(`redisStore (${appendOnly ? "AOF" : "no persistence"}), Redis killed and restarted at +3 s: ${ours.line}`);
      assert.equal(ours.sum.failures, 0, `failed calls: ${formatCounts(ours.sum.failureCodes)}`);
      assert.equal(w.idp.stats.invalidGrant, 0);
      assert.ok(eventsSince(reports, "refreshed:", restartedAt).length >= 1, "refreshed through the restarted Redis");
      assert.ok(ours.perPeriod <= 2, `${ours.perPeriod.toFixed(2)} requests per period`);
      await stopFleet();
    }
  });

  test('Redis unreachable for longer than a token lives: calls fail with the typed error naming Redis, unless fallback "local"', async (t) => {
    const w = await world(t);
    const strict = await startFleet(Array.from({ length: 2 }, () => w.config({ durationMs: 13_000 })));
    const local = await startFleet(Array.from({ length: 2 }, () => w.config({ durationMs: 13_000, fallback: "local" })));
    strict.go();
    local.go();
    await sleep(1_500);
    await w.redis.stop();
    const stoppedAt = Date.now();
    await sleep(2 * TTL_S * 1000);
    await w.redis.start();
    const strictReports = await strict.reports();
    const localReports = await local.reports();
    const strictFigures = figures(w.idp, strictReports, "client_credentials");
    const localFigures = figures(w.idp, localReports, "client_credentials");
    t.diagnostic(`Redis down ${2 * TTL_S} s, fallback "none": ${strictFigures.line}`);
    t.diagnostic(`Redis down ${2 * TTL_S} s, fallback "local": ${localFigures.line}`);
    for (const r of strictReports) {
      assert.ok(r.failures > 0, "once the token expired, calls failed");
      assert.deepEqual(Object.keys(r.failureCodes), ["Unauthenticated/ERR_TOKEN_REFRESH/unavailable"]);
      assert.ok(r.firstFailureAt! - stoppedAt >= 500, "the token in memory was served while it lasted");
      assert.ok(r.okAfterLastFailure > 5, "back to work once Redis was");
    }
    for (const r of localReports) {
      assert.equal(r.failures, 0, `failed calls: ${formatCounts(r.failureCodes)}`);
      assert.ok((r.reasons.fallback ?? 0) > 0, "onFallback was told");
    }
  });

  test("a corrupt value in the key: the valid token is still served, refreshes fail with 'corrupt' naming the key, a deleted key heals", async (t) => {
    const w = await world(t);
    const client = new Redis(w.redis.url);
    t.after(() => client.disconnect());
    const events: TokenEvent[] = [];
    const leaks = createLeakScanner();
    const tokens = createTokenManager({
      issuer: w.idp.issuer,
      clientId: w.idp.serviceClient.clientId,
      clientSecret: w.idp.serviceClient.clientSecret,
      grant: "client_credentials",
      resource: w.idp.audience,
      allowInsecureRequests: true,
      store: redisStore({ client, key: FLEET_KEY }),
      backoff: { baseMs: 200, maxMs: 400 },
      onEvent: (e) => events.push(e),
    });
    t.after(() => tokens.close());
    const first = await tokens.getAccessToken();
    leaks.remember(first);
    await client.hset(FLEET_KEY, "value", `{"version":1,"accessToken":"${first}"`); // cut short, a token inside
    // Past the refresh point (65 % of the lifetime), before expiry (90 %): the refresh fails, the token is served.
    await sleep(PERIOD_MS + 300);
    assert.equal(await tokens.getAccessToken(), first, "the valid token is still served");
    const failed = events.find((e) => e.type === "refresh-failed");
    assert.ok(failed?.type === "refresh-failed" && !failed.terminal, "a transient refresh failure");
    const cause = failed.error.cause;
    assert.ok(cause instanceof TokenStoreError && cause.reason === "corrupt", String(cause));
    assert.match(failed.error.message, /The Redis key "\{fleet\}:login" holds no usable login: it is not JSON/);
    for (const e of events) leaks.assertClean(e, "event");
    assert.equal(w.idp.stats.byGrantType.client_credentials, 1, "no token request while the store is unreadable");

    await client.del(FLEET_KEY);
    await sleep(1_000); // the next retry finds no login and fetches one
    const healed = await tokens.getAccessToken();
    assert.notEqual(healed, first);
    leaks.remember(healed);
    assert.ok((await client.hget(FLEET_KEY, "value"))?.includes('"accessToken"'), "stored again");
    for (const e of events) leaks.assertClean(e, "event");
  });
});

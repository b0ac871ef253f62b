/**
 * One login shared by many OS processes (issue 3): child processes (test/support/
 * process-worker.ts), each with its own token manager on one shared store, call a real
 * Connect server with tokens from a real oidc-provider whose refresh tokens rotate (a
 * re-used refresh token answers invalid_grant and revokes the whole login).
 *
 * Numbers (calls, failures, token-endpoint refreshes, invalid_grant) are printed as test
 * diagnostics. Reproduce: node --import tsx --test test/integration/multiprocess.test.ts
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Idp, startIdp } from "../support/idp.js";
import { keyringForTests } from "../support/keyring-for-tests.js";
import type { PrivateKeyring } from "../support/keyring-session.js";
import {
  formatCounts,
  killAll,
  refreshedCount,
  type SharedStore,
  startCallers,
  startLogin,
  type Target,
  totals,
} from "../support/process-fleet.js";
import type { WorkerReport } from "../support/process-worker.js";
import { startServer, type TestServer } from "../support/server.js";

const TTL_S = 3;
// The manager refreshes a token at 65 % of its life: usable until 90 % (a margin of
// min(1 s, 10 %)), minus a refresh window of min(15 min, 25 %).
const PERIOD_MS = TTL_S * 1000 * 0.65;
// fileStore's (and keyringStore's) lock lease: createFileLock's default staleMs.
const LEASE_MS = 10_000;
// Its heartbeat: the lock's mtime is renewed every staleMs / 4 while held.
const HEARTBEAT_MS = LEASE_MS / 4;

let folder: string;
before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-multiprocess-"));
});
after(async () => {
  await killAll();
  await rm(folder, { recursive: true, force: true });
});

/** A fresh IdP (TTL_S tokens, rotating refresh tokens) and server for one test. */
async function world(t: TestContext): Promise<{ idp: Idp; server: TestServer }> {
  const idp = await startIdp({ accessTokenTtl: TTL_S, rotateRefreshTokens: true });
  const server = await startServer({ idp, http2: false });
  t.after(async () => {
    await killAll();
    await server.close();
    await idp.close();
  });
  return { idp, server };
}

/** Requests the server refused, by reason: "none", or e.g. "expired=3". */
function refusedByServer(server: TestServer): string {
  const byReason: Record<string, number> = {};
  for (const r of server.stats.requests) if (r.auth === "rejected") byReason[r.reason ?? "?"] = (byReason[r.reason ?? "?"] ?? 0) + 1;
  return formatCounts(byReason);
}

/** Between the first and the last time in `reports`' timelines, events named like `prefix`. */
function eventsIn(reports: readonly WorkerReport[], prefix: string, from = -Infinity, to = Infinity): number[] {
  return reports
    .flatMap((r) => r.timeline)
    .filter((e) => e.event.startsWith(prefix) && e.at >= from && e.at < to)
    .map((e) => e.at)
    .sort((a, b) => a - b);
}

async function steadyState(t: TestContext, store: SharedStore, processes: number, durationMs: number): Promise<void> {
  const { idp, server } = await world(t);
  const target: Target = { issuer: idp.issuer, clientId: idp.clientId, server: server.baseUrl, store };
  const [login, fleet] = await Promise.all([startLogin(target), startCallers(target, processes, { durationMs })]);
  await login.store(() => idp.login());
  idp.resetStats();
  server.resetStats();
  fleet.go();
  const reports = await fleet.reports();
  const sum = totals(reports);
  const refreshRequests = idp.stats.byGrantType.refresh_token;
  const refreshed = refreshedCount(sum.events);
  const adopted = sum.events.adopted ?? 0;
  const periods = sum.elapsedMs / PERIOD_MS;
  const refusals = refusedByServer(server);
  t.diagnostic(
    `${store.kind}Store, N=${processes} processes, ${(sum.elapsedMs / 1000).toFixed(1)} s, access token TTL ${TTL_S} s: ` +
      `calls=${sum.calls} ok=${sum.ok} failures=${sum.failures} (${formatCounts(sum.failureCodes)}), ` +
      `token-endpoint refresh requests=${refreshRequests} (token periods ≈ ${periods.toFixed(1)}, ` +
      `uncoordinated would be ≈ ${Math.round(periods * processes)}), invalid_grant=${idp.stats.invalidGrant}, ` +
      `events: ${formatCounts(sum.events)}, requests the server refused (then retried)=${refusals}, ` +
      `max call ${sum.maxCallMs} ms, calls over 1 s=${sum.slowCalls}`,
  );
  t.diagnostic(
    `per process: ${reports
      .map((r) => `[calls=${r.calls} failures=${r.failures} refreshed=${refreshedCount(r.events)} adopted=${r.events.adopted ?? 0}]`)
      .join(" ")}`,
  );

  assert.ok(sum.calls >= processes * (durationMs / 100) * 0.5, `too few calls to mean anything: ${sum.calls}`);
  assert.equal(sum.failures, 0, `failed calls: ${formatCounts(sum.failureCodes)}`);
  assert.equal(idp.stats.invalidGrant, 0, "no refresh token was ever re-used");
  assert.equal(idp.stats.errors.invalid_grant ?? 0, 0);
  assert.equal(refreshRequests, refreshed, "every token-endpoint request is a refresh some process reported");
  // About one refresh per token period for all processes together, not one per process.
  const bound = Math.floor(1.5 * (sum.elapsedMs / 1000 / TTL_S) + processes);
  assert.ok(refreshRequests <= bound, `${refreshRequests} refresh requests, bound ${bound}`);
  assert.ok(refreshRequests <= Math.ceil(periods * 1.25) + 2, `${refreshRequests} refreshes in ≈ ${periods.toFixed(1)} periods`);
  assert.ok(refreshRequests >= Math.floor(periods * 0.7), `tokens were refreshed (${refreshRequests})`);
  // Most processes took the token another one stored instead of refreshing themselves.
  assert.ok(adopted >= (processes - 2) * refreshed, `adopted ${adopted} vs refreshed ${refreshed}`);
  const adopters = reports.filter((r) => (r.events.adopted ?? 0) > refreshedCount(r.events)).length;
  assert.ok(adopters >= processes - 1, `${adopters} of ${processes} processes mostly adopted`);
  for (const r of reports) assert.equal(r.endedBy, "duration");
}

describe("processes sharing one fileStore", () => {
  test("6 processes × 15 s: 0 failures, 0 invalid_grant, about one refresh per token period", async (t) => {
    await steadyState(t, { kind: "file", path: join(folder, "steady", "tokens.json") }, 6, 15_000);
  });

  test("a process SIGKILLed inside its refresh, holding the lock: the others go on after the lease", async (t) => {
    const { idp, server } = await world(t);
    const path = join(folder, "killed", "tokens.json");
    const store: SharedStore = { kind: "file", path };
    const target: Target = { issuer: idp.issuer, clientId: idp.clientId, server: server.baseUrl, store };
    const processes = 4;
    const [login, victim, fleet] = await Promise.all([
      startLogin(target),
      startCallers(target, 1, { durationMs: 60_000 }),
      startCallers(target, processes, { durationMs: 15_000 }),
    ]);
    await login.store(() => idp.login());
    idp.resetStats();
    // The victim alone first: its proactive refresh (at 65 % of the token's life) takes the
    // lock and hangs at the IdP, which holds token requests unprocessed for now.
    idp.setTokenLatency(60_000, { phase: "before" });
    victim.go();
    const deadline = Date.now() + TTL_S * 1000 + 5_000;
    while (idp.stats.tokenRequests === 0 && Date.now() < deadline) await sleep(10);
    const lockedAt = Date.now(); // the victim sends its refresh request under the lock
    assert.equal(idp.stats.tokenRequests, 1, "the victim is inside its refresh");
    fleet.go();
    await sleep(500);
    victim.workers[0]!.kill("SIGKILL");
    const killedAt = Date.now();
    assert.equal(await victim.workers[0]!.exited, "SIGKILL");
    idp.setTokenLatency(0);
    // What the lock looked like meanwhile, for a takeover later than the lease (seen twice,
    // about 20 s after the kill, and not reproduced since).
    const lockLog = watchLock(`${path}.lock`, lockedAt);
    const reports = await fleet.reports();
    lockLog.stop();
    const sum = totals(reports);

    const sinceLocked = eventsIn(reports, "", lockedAt);
    const takeover = eventsIn(reports, "refreshed:", lockedAt)[0];
    assert.ok(takeover !== undefined, "someone refreshed after the victim died");
    t.diagnostic(
      `fileStore, N=${processes} processes + 1 SIGKILLed inside its refresh, ${(sum.elapsedMs / 1000).toFixed(1)} s: ` +
        `calls=${sum.calls} ok=${sum.ok} failures=${sum.failures} (${formatCounts(sum.failureCodes)}), ` +
        `refresh requests=${idp.stats.byGrantType.refresh_token} (+1 dropped: the victim's), invalid_grant=${idp.stats.invalidGrant}, ` +
        `events: ${formatCounts(sum.events)}; the victim's request at +0, killed at +${killedAt - lockedAt} ms, first refresh ` +
        `by another at +${takeover - lockedAt} ms (lease ${LEASE_MS} ms), max call ${sum.maxCallMs} ms, ` +
        `calls over 1 s=${sum.slowCalls}, requests the server refused (then retried)=${refusedByServer(server)}`,
    );

    assert.equal(
      sum.failures,
      0,
      `failed calls: ${formatCounts(sum.failureCodes)}; refreshes that failed: ${reports.flatMap((r) => r.refreshFailures ?? []).join("; ")}`,
    );
    assert.equal(idp.stats.invalidGrant, 0, "the victim's refresh token was never used twice");
    assert.equal(idp.stats.tokenRequests, idp.stats.byGrantType.refresh_token + 1, "only the victim's request was dropped");
    // Nobody touched the tokens while the victim's lock could still be alive ...
    assert.equal(sinceLocked[0], takeover, "no token event between the victim's refresh and the takeover");
    assert.ok(takeover - lockedAt >= LEASE_MS - HEARTBEAT_MS, `took over ${takeover - lockedAt} ms after the lock was taken`);
    // ... and the lock was taken over within the lease (+ 1 s for whole-second mtimes).
    assert.ok(
      takeover - killedAt <= LEASE_MS + 1_500,
      `took over ${takeover - killedAt} ms after the kill (victim pid ${victim.workers[0]!.child.pid}); the lock, ms after the victim's request: ${lockLog.samples.join("; ")}`,
    );
    // The others waited (calls were slow, not failed) and went on after the takeover.
    assert.ok(sum.slowCalls > 0, "calls waited for the lock");
    assert.ok(sum.maxCallMs <= LEASE_MS + 2_500, `longest call ${sum.maxCallMs} ms`);
    for (const r of reports) {
      assert.equal(r.failures, 0);
      assert.ok(r.endedAt - takeover > 3_000, "the run went on well past the takeover");
      assert.ok(eventsIn([r], "", takeover).length > 0, `process ${r.pid} took tokens after the takeover`);
    }
    const refreshesAfter = eventsIn(reports, "refreshed:", takeover);
    const periodsAfter = (Math.max(...reports.map((r) => r.endedAt)) - takeover) / PERIOD_MS;
    assert.ok(refreshesAfter.length <= Math.ceil(periodsAfter * 1.25) + 2, `${refreshesAfter.length} refreshes after the takeover`);
  });

  test("a worker ends on SIGTERM with its report and exit code 0", async (t) => {
    const { idp, server } = await world(t);
    const store: SharedStore = { kind: "file", path: join(folder, "sigterm", "tokens.json") };
    const target: Target = { issuer: idp.issuer, clientId: idp.clientId, server: server.baseUrl, store };
    const [login, fleet] = await Promise.all([startLogin(target), startCallers(target, 1, { durationMs: 60_000 })]);
    await login.store(() => idp.login());
    fleet.go();
    await sleep(1_000);
    const [worker] = fleet.workers;
    worker!.kill("SIGTERM");
    const [report] = await fleet.reports();
    assert.equal(await worker!.exited, 0);
    assert.equal(report!.endedBy, "SIGTERM");
    assert.ok(report!.calls > 3 && report!.failures === 0, JSON.stringify(report));
  });

  test("grant revoked at the IdP: one reauth-required per process, no storm; a new login is picked up", async (t) => {
    const { idp, server } = await world(t);
    const store: SharedStore = { kind: "file", path: join(folder, "revoked", "tokens.json") };
    const target: Target = { issuer: idp.issuer, clientId: idp.clientId, server: server.baseUrl, store };
    const processes = 4;
    const [login, relogin, fleet] = await Promise.all([
      startLogin(target),
      startLogin(target),
      startCallers(target, processes, { durationMs: 14_000 }),
    ]);
    await login.store(() => idp.login());
    idp.resetStats();
    fleet.go();
    await sleep(3_000);
    const refreshesBefore = idp.stats.byGrantType.refresh_token;
    const revokedAt = Date.now();
    await idp.revokeGrant();
    // The first process to refresh meets invalid_grant and marks the login dead in the store;
    // every other one finds that out on its own next refresh, within a token lifetime.
    const deadline = Date.now() + 2 * TTL_S * 1000 + 2_000;
    while (idp.stats.invalidGrant < 1 && Date.now() < deadline) await sleep(50);
    await sleep(TTL_S * 1000 + 1_500); // all logged out for a while: calls fail fast, nobody asks the IdP
    const outage = {
      refreshes: idp.stats.byGrantType.refresh_token - refreshesBefore,
      invalidGrant: idp.stats.invalidGrant,
    };
    // One process logs in again and stores the login; the others are not restarted.
    const storedAt = await relogin.store(() => idp.login());
    const reports = await fleet.reports();
    const sum = totals(reports);
    const afterLogin = {
      refreshes: idp.stats.byGrantType.refresh_token - refreshesBefore - outage.refreshes,
      invalidGrant: idp.stats.invalidGrant - outage.invalidGrant,
    };
    const pickedUp = reports.map((r) => (r.lastFailureAt ?? storedAt) - storedAt);
    t.diagnostic(
      `fileStore, N=${processes} processes, ${(sum.elapsedMs / 1000).toFixed(1)} s, grant revoked at +${revokedAt - Math.min(...reports.map((r) => r.startedAt))} ms: ` +
        `calls=${sum.calls} ok=${sum.ok} failures=${sum.failures} (${formatCounts(sum.failureCodes)}); ` +
        `between revocation and new login: refresh requests=${outage.refreshes}, invalid_grant=${outage.invalidGrant}; ` +
        `after the new login: refresh requests=${afterLogin.refreshes}, invalid_grant=${afterLogin.invalidGrant}; ` +
        `events: ${formatCounts(sum.events)}; requests the server refused: ${refusedByServer(server)}; last failure relative to the stored login (ms): ${pickedUp.join(", ")}`,
    );

    // Each process: exactly one reauth-required, fast failures while logged out, then success.
    for (const r of reports) {
      assert.equal(r.events["reauth-required"], 1, `process ${r.pid}: ${formatCounts(r.events)}`);
      assert.ok(r.failures > 0, `process ${r.pid} saw the logout`);
      assert.deepEqual(Object.keys(r.failureCodes), ["Unauthenticated/ERR_REAUTH_REQUIRED"]);
      assert.ok(r.firstFailureAt! > revokedAt);
      assert.ok(
        r.lastFailureAt! <= storedAt + 2_000,
        `process ${r.pid} failed ${r.lastFailureAt! - storedAt} ms after the login was stored`,
      );
      assert.ok(r.okAfterLastFailure > 10, `process ${r.pid}: ${r.okAfterLastFailure} calls succeeded afterwards`);
      assert.ok(eventsIn([r], "adopted", storedAt).length >= 1, `process ${r.pid} adopted the new login`);
    }
    // No storm: a process asks the IdP about a dead login once (twice at most), whatever its call rate.
    assert.equal(outage.invalidGrant, outage.refreshes, "every refresh after the revocation failed");
    assert.ok(
      outage.refreshes >= 1 && outage.refreshes <= 2 * processes,
      `${outage.refreshes} refresh requests for ${processes} processes`,
    );
    assert.equal(afterLogin.invalidGrant, 0, "the new login is refreshed normally");
  });
});

const { keyring, skip: noKeyring } = await keyringForTests();

describe("processes sharing one keyringStore (gnome-keyring on a private D-Bus session)", { skip: noKeyring }, () => {
  after(async () => {
    if (typeof keyring !== "string") await keyring.stop();
  });

  test("6 processes × 15 s: 0 failures, 0 invalid_grant, about one refresh per token period", async (t) => {
    const session = keyring as PrivateKeyring;
    // Children inherit the private bus (DBUS_SESSION_BUS_ADDRESS) and runtime folder (lock files).
    const store: SharedStore = { kind: "keyring", service: `connect-oidc-multiprocess-${process.pid}`, account: "user", env: session.env };
    await steadyState(t, store, 6, 15_000);
  });
});

/**
 * Samples the lock folder every 500 ms (ms since `since`: its mtime and its owner's pid, or
 * that it is gone), keeping a line only when it changed.
 */
function watchLock(path: string, since: number): { samples: string[]; stop(): void } {
  const samples: string[] = [];
  let last = "";
  const sample = async () => {
    const at = Date.now() - since;
    const seen = await stat(path).then(
      async (info) => {
        const owner = await readFile(join(path, "owner"), "utf8").then(
          (text) => `pid ${(JSON.parse(text) as { pid?: number }).pid}`,
          (error: NodeJS.ErrnoException) => `no owner (${error.code})`,
        );
        return `mtime +${Math.round(info.mtimeMs - since)}, ${owner}`;
      },
      (error: NodeJS.ErrnoException) => `no lock (${error.code})`,
    );
    if (seen !== last) samples.push(`+${at}: ${seen}`);
    last = seen;
  };
  const timer = setInterval(() => void sample(), 500);
  void sample();
  return { samples, stop: () => clearInterval(timer) };
}

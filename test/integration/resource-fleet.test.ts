/**
 * One login, several services, several processes (issue 18 item 1): 4 OS processes
 * (test/support/process-worker.ts) share one login in a fileStore or a keyringStore; each
 * calls the main server and 3 resource servers (each verifying `aud` = its resource, so it
 * refuses the others' tokens) with `tokens.forResource(resource)`. The provider's refresh
 * tokens rotate (a re-used one answers invalid_grant and revokes the login), and every
 * resource's refresh rotates it: the processes must take every refresh, of every resource,
 * one at a time under the store's lock. Short tokens (4 s), 20 s runs.
 *
 * Numbers (calls, refreshes, invalid_grant) are printed as test diagnostics. Reproduce:
 * node --import tsx --test test/integration/resource-fleet.test.ts
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, type TestContext, test } from "node:test";
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
import { startServer, type TestServer } from "../support/server.js";

const TTL_S = 4;
const PROCESSES = 4;
const DURATION_MS = 20_000;
const RESOURCES = ["https://events.example.test", "https://tools.example.test", "https://sessions.example.test"];

let folder: string;
before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-resource-fleet-"));
});
after(async () => {
  await killAll();
  await rm(folder, { recursive: true, force: true });
});

async function world(t: TestContext): Promise<{ idp: Idp; main: TestServer; servers: Map<string, TestServer> }> {
  const idp = await startIdp({ accessTokenTtl: TTL_S, rotateRefreshTokens: true, resources: RESOURCES });
  const main = await startServer({ idp, http2: false });
  const servers = new Map<string, TestServer>();
  for (const resource of RESOURCES) servers.set(resource, await startServer({ idp, audience: resource, http2: false }));
  t.after(async () => {
    await killAll();
    for (const server of [main, ...servers.values()]) await server.close();
    await idp.close();
  });
  return { idp, main, servers };
}

/** Calls per server that it accepted, and the requests it refused (then retried) by reason. */
function serverFigures(server: TestServer): { ok: number; refused: string } {
  const refused: Record<string, number> = {};
  let ok = 0;
  for (const r of server.stats.requests) {
    if (r.auth === "rejected") refused[r.reason ?? "?"] = (refused[r.reason ?? "?"] ?? 0) + 1;
    else ok += 1;
  }
  return { ok, refused: formatCounts(refused) };
}

async function fleetOfResources(t: TestContext, store: SharedStore): Promise<void> {
  const { idp, main, servers } = await world(t);
  const target: Target = { issuer: idp.issuer, clientId: idp.clientId, server: main.baseUrl, store };
  const extra = [...servers].flatMap(([resource, server]) => ["--resource", `${resource}=${server.baseUrl}`]);
  const [login, fleet] = await Promise.all([startLogin(target), startCallers(target, PROCESSES, { durationMs: DURATION_MS, extra })]);
  await login.store(() => idp.login());
  idp.resetStats();
  fleet.go();
  const reports = await fleet.reports();
  const sum = totals(reports);
  const refreshRequests = idp.stats.byGrantType.refresh_token;
  const perServer = [["main", main] as const, ...servers]
    .map(([name, server]) => {
      const figures = serverFigures(server);
      return `${name}: ok=${figures.ok} refused=${figures.refused}`;
    })
    .join("; ");
  t.diagnostic(
    `${store.kind}Store, ${PROCESSES} processes × (main + ${RESOURCES.length} resources), ${(sum.elapsedMs / 1000).toFixed(1)} s, ` +
      `access token TTL ${TTL_S} s, rotating refresh tokens: calls=${sum.calls} ok=${sum.ok} failures=${sum.failures} ` +
      `(${formatCounts(sum.failureCodes)}), token-endpoint refresh requests=${refreshRequests} (of them for resources: ` +
      `${sum.events["resource-refreshed"] ?? 0}), invalid_grant=${idp.stats.invalidGrant}, events: ${formatCounts(sum.events)}, ` +
      `max call ${sum.maxCallMs} ms, calls over 1 s=${sum.slowCalls}; per server: ${perServer}`,
  );

  assert.ok(sum.calls >= PROCESSES * (DURATION_MS / 100) * 0.5, `too few calls to mean anything: ${sum.calls}`);
  assert.equal(sum.failures, 0, `failed calls: ${formatCounts(sum.failureCodes)}`);
  assert.equal(idp.stats.invalidGrant, 0, "no refresh token was ever re-used");
  assert.equal(idp.stats.errors.invalid_grant ?? 0, 0);
  assert.equal(refreshRequests, refreshedCount(sum.events), "every token-endpoint request is a refresh some process reported");
  // Every resource's token was refreshed more than once (the run spans several lifetimes), and the main one too.
  const tokenPeriods = sum.elapsedMs / (TTL_S * 1000);
  assert.ok(
    (sum.events["resource-refreshed"] ?? 0) >= RESOURCES.length * Math.floor(tokenPeriods / 2),
    "the resources' tokens were refreshed",
  );
  // About one refresh per token and lifetime for all processes together, not one per process.
  const bound = Math.ceil((RESOURCES.length + 1) * (tokenPeriods / 0.65) * 1.25) + 2 * PROCESSES * (RESOURCES.length + 1);
  assert.ok(refreshRequests <= bound, `${refreshRequests} refresh requests, bound ${bound}`);
  for (const server of [main, ...servers.values()]) assert.ok(serverFigures(server).ok > 0, "every server was called");
  for (const r of reports) assert.equal(r.endedBy, "duration");
}

describe("several resources, several processes, one rotating login", () => {
  test(`${PROCESSES} processes × ${RESOURCES.length} resources on one fileStore: 0 failed calls, 0 invalid_grant`, async (t) => {
    await fleetOfResources(t, { kind: "file", path: join(folder, "file", "tokens.json") });
  });

  test(`${PROCESSES} processes × ${RESOURCES.length} resources on one keyringStore: 0 failed calls, 0 invalid_grant`, async (t) => {
    const { keyring, skip } = await keyringForTests();
    if (skip !== undefined) return t.skip(skip);
    const session = keyring as PrivateKeyring;
    t.after(() => session.stop());
    const service = `connect-oidc-resource-fleet-${process.pid}`;
    await fleetOfResources(t, { kind: "keyring", service, account: "user", env: session.env });
  });
});

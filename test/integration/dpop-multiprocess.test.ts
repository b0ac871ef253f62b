/**
 * One DPoP-bound login shared by several OS processes (issue 12): a login bound to one key
 * (a real oidc-provider that demands its DPoP nonce, rotating refresh tokens bound to the
 * key), stored by a login process, then used by child processes (test/support/process-worker.ts
 * --dpop), each with its own token manager on the shared file store or keyring, calling a
 * real DPoP-verifying Connect server whose nonces rotate every second. Every process signs
 * with the one key from the store: 0 invalid_grant, 0 failed calls, one thumbprint on every
 * accepted request. Reproduce: node --import tsx --test test/integration/dpop-multiprocess.test.ts
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, type TestContext, test } from "node:test";
import { calculateJwkThumbprint } from "jose";
import { boundLogin } from "../support/dpop-bound-login.js";
import { startIdp } from "../support/idp.js";
import { keyringForTests } from "../support/keyring-for-tests.js";
import type { PrivateKeyring } from "../support/keyring-session.js";
import {
  formatCounts,
  killAll,
  refreshedCount,
  type SharedStore,
  startCallers,
  startWorker,
  type Target,
  totals,
} from "../support/process-fleet.js";
import { startServer } from "../support/server.js";
import { bounded } from "../support/dpop-attempt-budget.js";

const TTL_S = 3;
const PROCESSES = 4;
const DURATION_MS = 10_000;

let folder: string;
before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-dpop-multiprocess-"));
});
after(async () => {
  await killAll();
  await rm(folder, { recursive: true, force: true });
});

async function sharedDPoPLogin(t: TestContext, store: SharedStore): Promise<void> {
  const idp = await startIdp({ accessTokenTtl: TTL_S, rotateRefreshTokens: true, dpop: { requireNonce: true } });
  const server = await startServer({ idp, http2: false, dpop: { requireNonce: true, nonceRotateMs: 1000 } });
  t.after(async () => {
    await killAll();
    await server.close();
    await idp.close();
  });
  const target: Target = { issuer: idp.issuer, clientId: idp.clientId, server: server.baseUrl, store };

  // The login: a key of its own, the code bound to it; handed to a login process as JWKs.
  const loginWorker = startWorker("login", target, ["--dpop"]);
  const fleet = await startCallers(target, PROCESSES, { durationMs: DURATION_MS, extra: ["--dpop"] });
  await loginWorker.line("ready");
  const { login, dpopJwk } = await boundLogin(idp);
  const jkt = await calculateJwkThumbprint(dpopJwk.publicJwk as never);
  assert.equal(login.token_type.toLowerCase(), "dpop");
  loginWorker.child.stdin?.end(JSON.stringify({ ...login, dpopJwk }));
  await loginWorker.line("stored");
  await loginWorker.exited;

  idp.resetStats();
  server.resetStats();
  fleet.go();
  const reports = await fleet.reports();
  const sum = totals(reports);
  const requests = server.stats.requests;
  const accepted = requests.filter((r) => r.auth === "accepted");
  const thumbprints = new Set(accepted.map((r) => r.dpop?.jkt));
  const refusedBy: Record<string, number> = {};
  for (const r of requests) {
    if (r.auth !== "rejected") continue;
    // The proof's fault (its check's reason), else the token's (expired, revoked, ...).
    const reason = (r.dpop?.reason !== undefined && r.dpop.reason !== "token" ? r.dpop.reason : r.reason) ?? "?";
    refusedBy[reason] = (refusedBy[reason] ?? 0) + 1;
  }
  const nonceAnswers = idp.stats.errors.use_dpop_nonce ?? 0;
  const refreshRequests = idp.stats.byGrantType.refresh_token;
  t.diagnostic(
    `${store.kind}Store + DPoP, N=${PROCESSES} processes, ${(sum.elapsedMs / 1000).toFixed(1)} s, access token TTL ${TTL_S} s, ` +
      `server nonces rotating every 1 s: calls=${sum.calls} ok=${sum.ok} failures=${sum.failures} (${formatCounts(sum.failureCodes)}), ` +
      `refresh requests=${refreshRequests} (of which the IdP's use_dpop_nonce answers=${nonceAnswers}), invalid_grant=${idp.stats.invalidGrant}, ` +
      `events: ${formatCounts(sum.events)}, server refusals (each retried)=${formatCounts(refusedBy)}, key thumbprints on accepted calls=${thumbprints.size}, ` +
      `max call ${sum.maxCallMs} ms`,
  );

  assert.ok(sum.calls >= PROCESSES * (DURATION_MS / 100) * 0.5, `too few calls to mean anything: ${sum.calls}`);
  assert.equal(sum.failures, 0, `failed calls: ${formatCounts(sum.failureCodes)}`);
  assert.equal(idp.stats.invalidGrant, 0, "no refresh token was ever re-used or sent without its key");
  assert.deepEqual([...thumbprints], [jkt], "every process signed with the login's one key");
  assert.ok(refreshedCount(sum.events) >= 2, "tokens were refreshed (with proofs) while the processes ran");
  assert.equal(refreshRequests - nonceAnswers, refreshedCount(sum.events), "every other token request is a refresh a process reported");
  // Proofs are never at fault but for a nonce the server had just rotated; a token may expire
  // in flight (JWT exp is in whole seconds). Every such refusal was retried: 0 failed calls.
  assert.ok(
    Object.keys(refusedBy).every((reason) => ["nonce-missing", "nonce-stale", "expired"].includes(reason)),
    `only nonce and expiry refusals: ${formatCounts(refusedBy)}`,
  );
  for (const r of reports) assert.equal(r.endedBy, "duration");
}

describe("processes sharing one DPoP login on a fileStore", () => {
  test(`${PROCESSES} processes, one key, rotating server nonces: 0 invalid_grant, 0 failed calls`, bounded, async (t) => {
    await sharedDPoPLogin(t, { kind: "file", path: join(folder, "dpop", "tokens.json") });
  });
});

const { keyring, skip: noKeyring } = await keyringForTests();

describe("processes sharing one DPoP login on a keyringStore (gnome-keyring, private D-Bus)", { skip: noKeyring }, () => {
  after(async () => {
    if (typeof keyring !== "string") await keyring.stop();
  });
  test(`${PROCESSES} processes, one key, rotating server nonces: 0 invalid_grant, 0 failed calls`, bounded, async (t) => {
    const session = keyring as PrivateKeyring;
    await sharedDPoPLogin(t, { kind: "keyring", service: `connect-oidc-dpop-${process.pid}`, account: "user", env: session.env });
  });
});

/**
 * Row 5: 2, 4 and 8 OS processes sharing one login (rotating refresh tokens, 2 s access
 * tokens) through a file store and the real keyring (gnome-keyring in a private D-Bus
 * session), each calling a real server; ours against the uncoordinated baseline (each
 * process reads the login once and then refreshes it alone, writing the store, no lock).
 * Token-endpoint requests per token period, invalid_grant answers, failed calls.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startIdp } from "../test/support/idp.js";
import { type PrivateKeyring, startPrivateKeyring } from "../test/support/keyring-session.js";
import { killAll, type SharedStore, startCallers, startLogin, type Target, totals } from "../test/support/process-fleet.js";
import { startServer } from "../test/support/server.js";
import type { Row } from "./rows.js";

const TTL_S = 2;
// A refresh starts when 25 % of the lifetime (less the 10 % expiry margin) remains.
const PERIOD_MS = TTL_S * 1000 * 0.65;
const DURATION_MS = 5000;

interface Outcome {
  readonly perPeriod: number;
  readonly invalidGrant: number;
  readonly failed: number;
  readonly calls: number;
}

export async function fleetRows(sizes: readonly number[] = [2, 4, 8]): Promise<Row[]> {
  const dir = await mkdtemp(join(tmpdir(), "connect-oidc-bench-fleet-"));
  const keyring = process.platform === "linux" ? await startPrivateKeyring() : "not Linux";
  const rows: Row[] = [];
  try {
    const stores: [string, (n: number) => SharedStore | undefined][] = [
      ["file store", (n) => ({ kind: "file", path: join(dir, `tokens-${n}-${Math.random()}.json`) })],
      [
        "keyring",
        (n) =>
          typeof keyring === "string"
            ? undefined
            : {
                kind: "keyring",
                service: `connect-oidc-bench-${process.pid}`,
                account: `fleet-${n}-${Math.random()}`,
                env: (keyring as PrivateKeyring).env,
              },
      ],
    ];
    for (const [label, storeFor] of stores) {
      for (const n of sizes) {
        const store = storeFor(n);
        if (store === undefined) {
          rows.push({ name: `5. ${n} processes, ${label}`, ours: "skipped", baseline: "skipped", target: String(keyring) });
          continue;
        }
        const ours = await runFleet(store, n, false);
        const baseline = await runFleet(storeFor(n)!, n, true);
        const show = (o: Outcome) => `${o.perPeriod.toFixed(2)} / ${o.invalidGrant} / ${o.failed} of ${o.calls}`;
        rows.push({
          name: `5. ${n} processes, ${label}: requests per token period / invalid_grant / failed calls`,
          ours: show(ours),
          baseline: show(baseline),
          target: "≤ 1.25 / 0 / 0",
          met: ours.perPeriod <= 1.25 && ours.invalidGrant === 0 && ours.failed === 0,
        });
      }
    }
  } finally {
    await killAll();
    if (typeof keyring !== "string") await keyring.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

async function runFleet(store: SharedStore, processes: number, uncoordinated: boolean): Promise<Outcome> {
  const idp = await startIdp({ accessTokenTtl: TTL_S, rotateRefreshTokens: true });
  const server = await startServer({ idp, http2: false });
  try {
    const target: Target = { issuer: idp.issuer, clientId: idp.clientId, server: server.baseUrl, store };
    const [login, fleet] = await Promise.all([
      startLogin(target),
      startCallers(target, processes, {
        durationMs: DURATION_MS,
        extra: uncoordinated ? ["--uncoordinated"] : [],
        intervalMin: 40,
        intervalMax: 80,
      }),
    ]);
    await login.store(() => idp.login());
    idp.resetStats();
    fleet.go();
    const sum = totals(await fleet.reports());
    return {
      perPeriod: idp.stats.byGrantType.refresh_token / (sum.elapsedMs / PERIOD_MS),
      invalidGrant: idp.stats.invalidGrant,
      failed: sum.failures,
      calls: sum.calls,
    };
  } finally {
    await killAll();
    await server.close();
    await idp.close();
  }
}

/**
 * Row 8: a fleet of 8 machines (OS processes, each with its own Redis connection and token
 * manager) calling a real server, through a real redis-server: token requests per token
 * period on client credentials with redisStore against the same fleet without a shared
 * store (each process fetches its own token), and rotating refresh tokens through Redis
 * (invalid_grant, failed calls). Skipped without redis-server.
 */
import { startIdp } from "../test/support/idp.js";
import { totals } from "../test/support/process-fleet.js";
import { startFleet, stopFleet, storeLogin, workerConfig } from "../test/support/redis-fleet.js";
import { redisServerMissing, startRedisServer } from "../test/support/redis-server.js";
import type { WorkerConfig } from "../test/support/redis-worker.js";
import { startServer } from "../test/support/server.js";
import type { Row } from "./rows.js";

const TTL_S = 2;
// A token is refreshed at 65 % of its life.
const PERIOD_MS = TTL_S * 1000 * 0.65;
const DURATION_MS = 6_000;
const MACHINES = 8;

interface Outcome {
  readonly perPeriod: number;
  readonly invalidGrant: number;
  readonly failed: number;
  readonly calls: number;
}

export async function redisFleetRows(): Promise<Row[]> {
  const missing = redisServerMissing();
  if (missing !== undefined)
    return [{ name: `8. fleet of ${MACHINES} through Redis`, ours: "skipped", baseline: "skipped", target: missing }];
  const show = (o: Outcome) => `${o.perPeriod.toFixed(2)} / ${o.invalidGrant} / ${o.failed} of ${o.calls}`;
  const shared = await runFleet({ grant: "client_credentials" });
  const alone = await runFleet({ grant: "client_credentials", store: "memory" });
  const rotating = await runFleet({ grant: "refresh_token" });
  return [
    {
      name: `8. fleet of ${MACHINES}, client credentials: token requests per period / invalid_grant / failed calls (redisStore vs none shared)`,
      ours: show(shared),
      baseline: show(alone),
      ratio: `${(shared.perPeriod / alone.perPeriod).toFixed(3)}×`,
      target: "≤ 1.25 / 0 / 0",
      met: shared.perPeriod <= 1.25 && shared.failed === 0,
    },
    {
      name: `8. fleet of ${MACHINES}, rotating refresh tokens through redisStore: refreshes per period / invalid_grant / failed calls`,
      ours: show(rotating),
      baseline: "—",
      target: "≤ 1.25 / 0 / 0",
      met: rotating.perPeriod <= 1.25 && rotating.invalidGrant === 0 && rotating.failed === 0,
    },
  ];
}

async function runFleet(overrides: Partial<WorkerConfig>): Promise<Outcome> {
  const idp = await startIdp({ accessTokenTtl: TTL_S, rotateRefreshTokens: true });
  const [server, redis] = await Promise.all([startServer({ idp, http2: false }), startRedisServer()]);
  try {
    const config = workerConfig({ idp, server: server.baseUrl, redisUrl: redis.url }, { durationMs: DURATION_MS, ...overrides });
    const fleet = await startFleet(Array.from({ length: MACHINES }, () => config));
    if (config.grant === "refresh_token") await storeLogin(idp, redis.url);
    idp.resetStats();
    fleet.go();
    const sum = totals(await fleet.reports());
    return {
      perPeriod: idp.stats.byGrantType[config.grant]! / (sum.elapsedMs / PERIOD_MS),
      invalidGrant: idp.stats.invalidGrant,
      failed: sum.failures,
      calls: sum.calls,
    };
  } finally {
    await stopFleet();
    await Promise.all([server.close(), idp.close(), redis.close()]);
  }
}

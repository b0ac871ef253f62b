/**
 * One machine of a fleet sharing one login through Redis, for test/integration/redis-fleet.test.ts and
 * bench/redis-fleet.ts: its own Redis connection, its own token manager, a Connect client
 * calling the test server.
 *
 * Usage: node --import tsx test/support/redis-worker.ts --config <JSON of WorkerConfig>
 * Prints {"kind":"ready"}, waits for "go" on stdin, calls EchoService.Say every 50–100 ms
 * for durationMs, then prints a report line shaped like process-worker.ts's (WorkerReport)
 * plus `reasons`: TokenStoreError reasons seen in events (and `confirm:<reason>` when the
 * lease was found lost right before a request to the identity provider). With `stall`, the first time the
 * store reaches that point under its lease the worker prints {"kind":"stalling"} and waits
 * for a "resume" line (the test SIGSTOPs it meanwhile: its lease renewals stop too).
 *
 * Nothing printed holds token material: failures and events are reported by name only.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, memoryStore, type TokenEvent, type TokenStore } from "../../src/index.js";
import { redisStore } from "../../src/redis.js";
import type { WorkerReport } from "./process-worker.js";
import { exitFlushed, refreshEnded } from "./worker-end.js";

export interface WorkerConfig {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret?: string;
  readonly resource?: string;
  readonly grant: "refresh_token" | "client_credentials";
  readonly server: string;
  readonly durationMs: number;
  /** "memory": the baseline without a shared store (each process on its own). */
  readonly store: "redis" | "memory";
  readonly redisUrl: string;
  readonly key: string;
  readonly leaseMs?: number;
  readonly timeoutMs?: number;
  readonly fallback?: "none" | "local";
  /**
   * Where the first refresh under the lease stops for the test: "in-lock" before the read,
   * "after-read" between the read and the request to the identity provider, "before-save"
   * between the identity provider's answer and the save.
   */
  readonly stall?: "in-lock" | "after-read" | "before-save";
}

export interface RedisWorkerReport extends WorkerReport {
  /** `reason` of every TokenStoreError in a refresh-failed event (and `fallback` per onFallback call). */
  readonly reasons: Record<string, number>;
}

const at = process.argv.indexOf("--config");
const config = JSON.parse(process.argv[at + 1] ?? "{}") as WorkerConfig;
const print = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);
const count = (into: Record<string, number>, name: string) => {
  into[name] = (into[name] ?? 0) + 1;
};

const lines = createInterface({ input: process.stdin });
const waiting = new Map<string, () => void>();
lines.on("line", (line) => waiting.get(line.trim())?.());
const nextLine = (text: string) => new Promise<void>((resolve) => waiting.set(text, resolve));

const reasons: Record<string, number> = {};
const redis = new Redis(config.redisUrl, { lazyConnect: false });
redis.on("error", () => {}); // reconnects by itself; store calls report the failure

/** The shared store, stalling once at the configured point while it holds the lease. */
function openStore(): TokenStore {
  if (config.store === "memory") return memoryStore();
  const store = redisStore({
    client: redis,
    key: config.key,
    ...(config.leaseMs !== undefined ? { leaseMs: config.leaseMs } : {}),
    ...(config.timeoutMs !== undefined ? { timeoutMs: config.timeoutMs } : {}),
    ...(config.fallback !== undefined ? { fallback: config.fallback } : {}),
    onFallback: () => count(reasons, "fallback"),
  });
  let stalled = config.stall === undefined;
  const stall = async () => {
    if (stalled) return;
    stalled = true;
    const resumed = nextLine("resume");
    print({ kind: "stalling", at: Date.now() });
    await resumed;
  };
  const inLock = new AsyncLocalStorage<true>();
  return {
    async load() {
      const login = await store.load();
      if (config.stall === "after-read" && inLock.getStore() === true) await stall();
      return login;
    },
    clear: () => store.clear(),
    async save(tokens) {
      if (config.stall === "before-save") await stall();
      return store.save(tokens);
    },
    lock: (fn, signal) =>
      store.lock!(
        (hold) =>
          inLock.run(true, async () => {
            if (config.stall === "in-lock") await stall();
            // Counted as "confirm:<reason>" when the lease is found lost right before the request.
            const confirm = async () =>
              hold?.confirm().catch((error: unknown) => {
                count(reasons, `confirm:${storeReason(error) ?? "failed"}`);
                throw error;
              });
            return fn(hold === undefined ? undefined : { confirm });
          }),
        signal,
      ),
  };
}

function describeEvent(event: TokenEvent): string {
  if (event.type === "refreshed") return `refreshed:${event.reason}`;
  if (event.type === "refresh-failed") {
    const reason = storeReason(event.error);
    if (reason !== undefined) count(reasons, reason);
    return `refresh-failed:${event.terminal ? "terminal" : "transient"}`;
  }
  return event.type;
}

/** The TokenStoreError reason of `error` or of its cause (a TokenRefreshError keeps the store's error as cause). */
function storeReason(error: unknown): string | undefined {
  const e = error as { reason?: unknown; cause?: { reason?: unknown } } | undefined;
  const reason = e?.reason ?? e?.cause?.reason;
  return typeof reason === "string" ? reason : undefined;
}

function failureCode(error: unknown): string {
  const e = ConnectError.from(error);
  const cause = e.cause as { code?: unknown; name?: unknown; cause?: unknown } | undefined;
  const reason = storeReason(cause);
  return `${Code[e.code]}/${typeof cause?.code === "string" ? cause.code : String(cause?.name ?? "none")}${reason ? `/${reason}` : ""}`;
}

const events: Record<string, number> = {};
const timeline: { at: number; event: string }[] = [];
const tokens = createTokenManager({
  issuer: config.issuer,
  clientId: config.clientId,
  ...(config.clientSecret !== undefined ? { clientSecret: config.clientSecret } : {}),
  ...(config.resource !== undefined ? { resource: config.resource } : {}),
  grant: config.grant,
  store: openStore(),
  allowInsecureRequests: true,
  onEvent(event) {
    const name = describeEvent(event);
    count(events, name);
    timeline.push({ at: Date.now(), event: name });
  },
});
const client = createClient(
  EchoService,
  createConnectTransport({ baseUrl: config.server, httpVersion: "1.1", interceptors: [createAuthInterceptor(tokens)] }),
);

const go = nextLine("go");
print({ kind: "ready", pid: process.pid });
await go;
const startedAt = Date.now();
const failureCodes: Record<string, number> = {};
const run = { calls: 0, ok: 0, maxCallMs: 0, slowCalls: 0, okAfterLastFailure: 0 };
const failedAt: number[] = [];
while (Date.now() < startedAt + config.durationMs) {
  const began = Date.now();
  run.calls += 1;
  try {
    await client.say({ text: `call ${run.calls}` }, { signal: AbortSignal.timeout(25_000) });
    run.ok += 1;
    run.okAfterLastFailure += 1;
  } catch (error) {
    count(failureCodes, failureCode(error));
    failedAt.push(Date.now());
    run.okAfterLastFailure = 0;
  }
  const took = Date.now() - began;
  run.maxCallMs = Math.max(run.maxCallMs, took);
  if (took > 1_000) run.slowCalls += 1;
  await sleep(50 + Math.random() * 50);
}
await refreshEnded(tokens);
tokens.close();
const report: RedisWorkerReport = {
  kind: "report",
  pid: process.pid,
  startedAt,
  endedAt: Date.now(),
  endedBy: "duration",
  ...run,
  failures: run.calls - run.ok,
  failureCodes,
  cancelled: 0,
  firstFailureAt: failedAt[0],
  lastFailureAt: failedAt.at(-1),
  events,
  timeline,
  reasons,
};
print(report);
await exitFlushed(0);

/**
 * Starts redis-worker.ts processes (the machines of a fleet) and collects their lines.
 * Every process started here is remembered, so `stopFleet()` (in `after`) leaves none
 * behind, stopped (SIGSTOP) ones included.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { createTokenManager } from "../../src/index.js";
import { redisStore } from "../../src/redis.js";
import type { Idp } from "./idp.js";
import type { RedisWorkerReport, WorkerConfig } from "./redis-worker.js";
import { bundledWorker } from "./worker-bundle.js";

/** The key the fleets share. */
export const FLEET_KEY = "{fleet}:login";

/**
 * A worker configuration against this IdP, server and Redis: client credentials (the IdP's
 * `test-service`) unless `overrides.grant` is "refresh_token" (`test-cli`, after `storeLogin`).
 */
export function workerConfig(
  parts: { readonly idp: Idp; readonly server: string; readonly redisUrl: string },
  overrides: Partial<WorkerConfig> = {},
): WorkerConfig {
  const { idp } = parts;
  const grant = overrides.grant ?? "client_credentials";
  return {
    issuer: idp.issuer,
    ...(grant === "client_credentials"
      ? { clientId: idp.serviceClient.clientId, clientSecret: idp.serviceClient.clientSecret, resource: idp.audience }
      : { clientId: idp.clientId }),
    grant,
    server: parts.server,
    durationMs: 10_000,
    store: "redis",
    redisUrl: parts.redisUrl,
    key: FLEET_KEY,
    leaseMs: 1_000,
    timeoutMs: 500,
    ...overrides,
  };
}

/** Stores a fresh login of `test-cli` (rotating refresh tokens) in the fleet's key, as a `login` command would. */
export async function storeLogin(idp: Idp, redisUrl: string): Promise<void> {
  const client = new Redis(redisUrl);
  try {
    const store = redisStore({ client, key: FLEET_KEY });
    const tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, store, allowInsecureRequests: true });
    await tokens.setTokens(await idp.login());
    tokens.close();
  } finally {
    client.disconnect();
  }
}

const script = fileURLToPath(new URL("./redis-worker.ts", import.meta.url));
const running = new Set<ChildProcess>();

export interface FleetMachine {
  readonly child: ChildProcess;
  /** The first line of this kind (`ready`, `stalling`, `report`); rejects if the process ends without one. */
  line(kind: string): Promise<Record<string, unknown>>;
  send(line: string): void;
}

export function startMachine(config: WorkerConfig): FleetMachine {
  const child = spawn(process.execPath, [bundledWorker(script), "--config", JSON.stringify(config)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  running.add(child);
  const exit = once(child, "exit").finally(() => running.delete(child));
  const seen: Record<string, unknown>[] = [];
  const reader = createInterface({ input: child.stdout! });
  reader.on("line", (text) => {
    try {
      seen.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      seen.push({ kind: "text", text });
    }
  });
  const closed = once(reader, "close");
  child.stdin?.on("error", () => {}); // a killed child must not fail the test with EPIPE
  return {
    child,
    async line(kind) {
      for (;;) {
        const found = seen.find((l) => l.kind === kind);
        if (found !== undefined) return found;
        const more = once(reader, "line");
        const ended = await Promise.race([more.then(() => false), closed.then(() => true)]);
        if (ended && !seen.some((l) => l.kind === kind)) {
          const [code, signal] = (await exit) as [number | null, string | null];
          throw new Error(`redis worker ${child.pid} ended (${code ?? signal}) without a "${kind}" line`);
        }
      }
    },
    send(line) {
      child.stdin?.write(`${line}\n`);
    },
  };
}

/** `configs.length` machines, all ready; `go()` starts them together. */
export async function startFleet(configs: readonly WorkerConfig[]) {
  const machines = configs.map(startMachine);
  await Promise.all(machines.map((m) => m.line("ready")));
  return {
    machines,
    go() {
      for (const m of machines) m.send("go");
    },
    reports: () => Promise.all(machines.map(async (m) => (await m.line("report")) as unknown as RedisWorkerReport)),
  };
}

/** Ends every machine still running (continued first if stopped). */
export async function stopFleet(): Promise<void> {
  const exits = [...running].map((child) => once(child, "exit"));
  for (const child of running) {
    child.kill("SIGCONT");
    child.kill("SIGKILL");
  }
  await Promise.all(exits);
}

/**
 * A heartbeat client: opens an agent session, sends a heartbeat every N seconds for as
 * long as it runs, and ends the session when stopped (duration reached or Ctrl-C).
 * Token refreshes happen underneath, in connect-oidc; they show up on stderr.
 *
 *   tsx examples/heartbeat.ts --issuer https://login.example.com --client-id my-cli \
 *     --server https://api.example.com [--interval 30s] [--duration 2h] [--store keyring]
 *
 * `runHeartbeat(options)` is the loop itself, for use with any transport (the demo's).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createAuthInterceptor } from "connect-oidc";
import { AgentSessionService } from "../gen/agent/v1/session_pb.js";
import { formatDuration, parseDuration } from "./lib/duration.js";
import type { LoginMethod } from "./lib/login.js";
import { stopOnCtrlC } from "./lib/signals.js";
import { STORE_HELP } from "./lib/store.js";
import { loggedInTokenManager } from "./lib/tokens.js";

export interface HeartbeatOptions {
  /** A transport that authenticates its calls (createAuthInterceptor). */
  readonly transport: Transport;
  /** Default "example-agent". */
  readonly agentName?: string;
  /** Default 30 s. */
  readonly intervalMs?: number;
  /** Stop after this long; default: until `signal` aborts. */
  readonly durationMs?: number;
  /** Stops the loop; the session is still ended. */
  readonly signal?: AbortSignal;
  /** Each call; default 10 s. */
  readonly callTimeoutMs?: number;
  /** Where progress and failures go; default stderr. */
  readonly log?: (line: string) => void;
}

export interface HeartbeatResult {
  readonly sessionId: string;
  /** Heartbeats the server acknowledged. */
  readonly sent: number;
  /** Heartbeats that failed (each one reported through `log`). */
  readonly failed: number;
  /** Whether EndSession succeeded. */
  readonly ended: boolean;
}

const stderr = (line: string) => process.stderr.write(`${line}\n`);

/**
 * CreateSession, then a heartbeat at every multiple of the interval (missed ticks are
 * skipped, not bunched), then EndSession. A failed heartbeat is reported and counted;
 * the loop goes on. CreateSession failing is fatal (thrown).
 */
export async function runHeartbeat(options: HeartbeatOptions): Promise<HeartbeatResult> {
  const client = createClient(AgentSessionService, options.transport);
  const intervalMs = options.intervalMs ?? 30_000;
  const durationMs = options.durationMs ?? Number.POSITIVE_INFINITY;
  const timeoutMs = options.callTimeoutMs ?? 10_000;
  const log = options.log ?? stderr;
  const { signal } = options;
  if (!(intervalMs > 0)) throw new Error("runHeartbeat: intervalMs must be positive");

  const { sessionId } = await client.createSession({ agentName: options.agentName ?? "example-agent" }, { timeoutMs });
  log(`Session ${sessionId} opened; a heartbeat every ${formatDuration(intervalMs)}`);

  let sent = 0;
  let failed = 0;
  const start = Date.now();
  for (let tick = 0; !signal?.aborted; ) {
    const due = start + tick * intervalMs;
    if (due - start >= durationMs) break;
    const wait = due - Date.now();
    if (wait > 0) {
      try {
        await sleep(wait, undefined, signal ? { signal } : {});
      } catch {
        break; // aborted
      }
    }
    try {
      await client.heartbeat({ sessionId }, { timeoutMs });
      sent++;
    } catch (error) {
      failed++;
      log(`✗ Heartbeat ${sent + failed} failed: ${describe(error)}`);
    }
    // The next tick still ahead: a slow call skips ticks instead of bunching them.
    tick = Math.max(tick + 1, Math.ceil((Date.now() - start) / intervalMs));
  }

  let ended = false;
  try {
    await client.endSession({ sessionId }, { timeoutMs });
    ended = true;
    log(`Session ${sessionId} ended after ${sent} heartbeat${sent === 1 ? "" : "s"}${failed ? `, ${failed} failed` : ""}`);
  } catch (error) {
    log(`✗ Could not end session ${sessionId}: ${describe(error)}`);
  }
  return { sessionId, sent, failed, ended };
}

function describe(error: unknown): string {
  return error instanceof ConnectError ? error.message : error instanceof Error ? error.message : String(error);
}

const USAGE = `usage: tsx examples/heartbeat.ts --issuer <url> --client-id <id> --server <url>
         [--interval 30s] [--duration <e.g. 90s, 5m, 2h>] [--store ${STORE_HELP}]
         [--login device|browser|none] [--agent-name <name>] [--http2]
  (or OIDC_ISSUER, OIDC_CLIENT_ID, AGENT_SERVER_URL, HEARTBEAT_INTERVAL in the environment)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      issuer: { type: "string", default: process.env.OIDC_ISSUER },
      "client-id": { type: "string", default: process.env.OIDC_CLIENT_ID },
      server: { type: "string", default: process.env.AGENT_SERVER_URL },
      interval: { type: "string", default: process.env.HEARTBEAT_INTERVAL ?? "30s" },
      duration: { type: "string" },
      store: { type: "string" },
      login: { type: "string" },
      "agent-name": { type: "string", default: "example-agent" },
      http2: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help || !values.issuer || !values["client-id"] || !values.server) {
    stderr(USAGE);
    return values.help ? 0 : 2;
  }
  if (values.login !== undefined && !["device", "browser", "none"].includes(values.login)) {
    throw new Error("--login: expected device, browser or none");
  }
  const tokens = await loggedInTokenManager({
    issuer: values.issuer,
    clientId: values["client-id"],
    ...(values.store !== undefined ? { store: values.store } : {}),
    ...(values.login !== undefined ? { login: values.login as LoginMethod | "none" } : {}),
  });
  try {
    const transport = createConnectTransport({
      baseUrl: values.server,
      httpVersion: values.http2 ? "2" : "1.1",
      interceptors: [createAuthInterceptor(tokens)],
    });
    const result = await runHeartbeat({
      transport,
      agentName: values["agent-name"],
      intervalMs: parseDuration(values.interval),
      ...(values.duration !== undefined ? { durationMs: parseDuration(values.duration) } : {}),
      signal: stopOnCtrlC(),
    });
    process.stdout.write(`heartbeats: sent ${result.sent}, failed ${result.failed}; session ${result.ended ? "ended" : "NOT ended"}\n`);
    return result.failed === 0 && result.ended ? 0 : 1;
  } finally {
    tokens.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      stderr(`heartbeat: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    },
  );
}

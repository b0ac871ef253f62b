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
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { AgentSessionService } from "../gen/agent/v1/session_pb.js";
import { parseCli, runMain } from "./lib/cli.js";
import { formatDuration, parseDuration } from "./lib/duration.js";
import { stopOnCtrlC } from "./lib/signals.js";
import { STORE_HELP } from "./lib/store.js";
import { withLoggedInTransport } from "./lib/tokens.js";

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

function parseFlags() {
  return parseCli({
    command: "tsx examples/heartbeat.ts",
    description:
      "Opens an agent session, sends a heartbeat every --interval until --duration is up or Ctrl-C,\n" +
      "then ends the session. Token refreshes happen underneath and show up on stderr.",
    flags: {
      issuer: { type: "string", kind: "url", env: "OIDC_ISSUER", required: true, help: "the OIDC issuer" },
      "client-id": { type: "string", value: "<id>", env: "OIDC_CLIENT_ID", required: true, help: "this client's id at the issuer" },
      server: { type: "string", kind: "url", env: "AGENT_SERVER_URL", required: true, help: "the AgentSessionService base URL" },
      interval: { type: "string", kind: "duration", env: "HEARTBEAT_INTERVAL", default: "30s", help: "time between heartbeats" },
      duration: { type: "string", kind: "duration", help: "stop after this long (default: until Ctrl-C)" },
      store: { type: "string", value: "<store>", help: `where the login is kept: ${STORE_HELP}` },
      login: {
        type: "string",
        choices: ["device", "browser", "none"],
        help: "how to log in when none is stored (default: browser on a desktop, else device)",
      },
      "agent-name": { type: "string", value: "<name>", default: "example-agent", help: "the session's agent name" },
      http2: { type: "boolean", help: "HTTP/2 instead of HTTP/1.1" },
    },
    example:
      "tsx examples/heartbeat.ts --issuer https://login.example.com --client-id my-cli --server https://api.example.com --duration 2h",
  });
}

async function main(): Promise<number> {
  const { values } = parseFlags();
  const intervalMs = parseDuration(values.interval);
  const durationMs = values.duration !== undefined ? parseDuration(values.duration) : undefined;
  return withLoggedInTransport(values, async (transport) => {
    const result = await runHeartbeat({
      transport,
      agentName: values["agent-name"],
      intervalMs,
      ...(durationMs !== undefined ? { durationMs } : {}),
      signal: stopOnCtrlC(),
    });
    process.stdout.write(`heartbeats: sent ${result.sent}, failed ${result.failed}; session ${result.ended ? "ended" : "NOT ended"}\n`);
    return result.failed === 0 && result.ended ? 0 : 1;
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runMain("heartbeat", main);

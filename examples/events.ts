/**
 * An event client: reads agent hook events, one JSON object per line, from a file or
 * stdin, and sends each with IngestEvent, in order. No event is dropped quietly: a send
 * that fails is retried with exponential backoff and jitter (the same client_event_id,
 * so the server stores it once) and reported on stderr; only after `maxAttempts` is an
 * event given up, reported as lost and counted in the summary.
 *
 *   tsx examples/events.ts --issuer https://login.example.com --client-id my-cli \
 *     --server https://api.example.com [--file events.jsonl] [--session <id>] [--store keyring]
 *
 * A line: {"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{...},
 * "tool_output":{...},"client_event_id":"..."} (camelCase and Claude Code's
 * "tool_response" work too; without an id one is made up). Each answer goes to stdout
 * as a JSON line: {"line":1,"client_event_id":"…","event_id":"…","decision":"allow"}.
 *
 * `runEvents(options)` is the sender itself, for use with any transport and source.
 */
import { randomUUID } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { AgentSessionService, Decision } from "../gen/agent/v1/session_pb.js";
import { parseCli, runMain, usageError } from "./lib/cli.js";
import { formatDuration } from "./lib/duration.js";
import { STORE_HELP } from "./lib/store.js";
import { stopOnCtrlC } from "./lib/signals.js";
import { withLoggedInTransport } from "./lib/tokens.js";

export interface AgentEvent {
  readonly hookEventName: string;
  readonly toolName: string;
  readonly toolInput?: unknown;
  readonly toolOutput?: unknown;
  readonly clientEventId: string;
}

export interface EventRetryOptions {
  /** Attempts per event before it is given up as lost; default 8 (about a minute of backoff). */
  readonly maxAttempts?: number;
  /** First backoff; default 500 ms, doubling. */
  readonly baseMs?: number;
  /** Backoff ceiling; default 30 s. */
  readonly maxMs?: number;
}

export interface EventsOptions {
  /** A transport that authenticates its calls (createAuthInterceptor). */
  readonly transport: Transport;
  /** Lines of JSON (see readLines), or events already parsed. */
  readonly source: AsyncIterable<string | AgentEvent>;
  /** Send into this session; default: open one (and end it when done). */
  readonly sessionId?: string;
  /** For the session opened here; default "example-agent". */
  readonly agentName?: string;
  readonly retry?: EventRetryOptions;
  /** Each call; default 10 s. */
  readonly callTimeoutMs?: number;
  /** Stop reading; an event still being retried is reported as lost ("interrupted"). */
  readonly signal?: AbortSignal;
  /** Every stored event's answer. */
  readonly onResult?: (result: EventResult) => void;
  /** Where failures and progress go; default stderr. */
  readonly log?: (line: string) => void;
  /** Random source in [0, 1) for the backoff jitter; default Math.random. */
  readonly random?: () => number;
}

export interface EventResult {
  /** 1-based position in the source. */
  readonly line: number;
  readonly clientEventId: string;
  readonly eventId: string;
  readonly decision: "allow" | "deny" | "ask" | "unspecified";
  /** 1 when the first send went through. */
  readonly attempts: number;
}

export interface LostEvent {
  readonly line: number;
  readonly clientEventId: string;
  readonly reason: string;
}

export interface EventsSummary {
  readonly sessionId: string;
  /** Lines (or events) taken from the source, malformed ones included, blank lines not. */
  readonly read: number;
  /** Events the server acknowledged. */
  readonly sent: number;
  /** Events given up (after maxAttempts, a permanent error, or an interruption). */
  readonly lost: number;
  readonly lostEvents: readonly LostEvent[];
  /** Events that needed more than one attempt (and were sent). */
  readonly retried: number;
  /** Failed attempts, over all events. */
  readonly failedAttempts: number;
  /** Lines that are not an event: reported and skipped, there is nothing to send. */
  readonly malformed: number;
  readonly decisions: { readonly allow: number; readonly deny: number; readonly ask: number };
}

const stderr = (line: string) => process.stderr.write(`${line}\n`);

// Retrying cannot fix these: the request itself is wrong, or the session is gone.
const PERMANENT = new Set([Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition, Code.PermissionDenied, Code.Unimplemented]);

const DECISIONS: Record<Decision, EventResult["decision"]> = {
  [Decision.UNSPECIFIED]: "unspecified",
  [Decision.ALLOW]: "allow",
  [Decision.DENY]: "deny",
  [Decision.ASK]: "ask",
};

/** Lines of a file, or of stdin for "-"; opened when the iteration starts. */
export async function* readLines(path: string): AsyncGenerator<string> {
  const input = path === "-" ? process.stdin : createReadStream(path, { encoding: "utf8" });
  // Iterate at once: readline emits lines whether or not anyone listens yet.
  yield* createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
}

/** One JSONL line as an event; throws with a short reason (never echoing the line). */
export function parseEventLine(line: string): AgentEvent {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new Error("not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not a JSON object");
  const o = value as Record<string, unknown>;
  const pick = (...keys: string[]) => keys.map((k) => o[k]).find((v) => v !== undefined);
  const hookEventName = pick("hook_event_name", "hookEventName");
  if (typeof hookEventName !== "string" || hookEventName === "") throw new Error("no hook_event_name");
  const toolName = pick("tool_name", "toolName") ?? "";
  if (typeof toolName !== "string") throw new Error("tool_name is not a string");
  const id = pick("client_event_id", "clientEventId", "id");
  if (id !== undefined && (typeof id !== "string" || id === "")) throw new Error("client_event_id is not a non-empty string");
  return {
    hookEventName,
    toolName,
    toolInput: pick("tool_input", "toolInput"),
    toolOutput: pick("tool_output", "toolOutput", "tool_response"),
    // Chosen once, before the first attempt: every retry carries the same id.
    clientEventId: id ?? randomUUID(),
  };
}

/** The source's items until `signal` aborts, also while waiting for the next one (stdin may be quiet). */
async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal | undefined): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const aborted = new Promise<"aborted">((resolve) => {
    if (signal?.aborted) resolve("aborted");
    signal?.addEventListener("abort", () => resolve("aborted"), { once: true });
  });
  try {
    for (;;) {
      const next = await Promise.race([it.next(), aborted]);
      if (next === "aborted" || next.done) return;
      yield next.value;
    }
  } finally {
    // Not awaited: a generator's return() waits for a next() still pending.
    it.return?.()?.catch(() => {});
  }
}

const json = (value: unknown) => (value === undefined ? new Uint8Array() : new TextEncoder().encode(JSON.stringify(value)));

export async function runEvents(options: EventsOptions): Promise<EventsSummary> {
  const client = createClient(AgentSessionService, options.transport);
  const log = options.log ?? stderr;
  const timeoutMs = options.callTimeoutMs ?? 10_000;
  const maxAttempts = Math.max(1, options.retry?.maxAttempts ?? 8);
  const baseMs = options.retry?.baseMs ?? 500;
  const maxMs = options.retry?.maxMs ?? 30_000;
  const random = options.random ?? Math.random;
  const { signal } = options;

  const own = options.sessionId === undefined;
  const sessionId =
    options.sessionId ?? (await client.createSession({ agentName: options.agentName ?? "example-agent" }, { timeoutMs })).sessionId;
  if (own) log(`Session ${sessionId} opened for events`);

  let read = 0;
  let sent = 0;
  let retried = 0;
  let failedAttempts = 0;
  let malformed = 0;
  const lostEvents: LostEvent[] = [];
  const decisions = { allow: 0, deny: 0, ask: 0 };

  const send = async (event: AgentEvent, line: number) => {
    const label = `Event ${line} (${event.hookEventName}${event.toolName ? ` ${event.toolName}` : ""})`;
    const request = {
      sessionId,
      hookEventName: event.hookEventName,
      toolName: event.toolName,
      toolInputJson: json(event.toolInput),
      toolOutputJson: json(event.toolOutput),
      clientEventId: event.clientEventId,
    };
    for (let attempt = 1; ; attempt++) {
      let failure: ConnectError;
      try {
        const res = await client.ingestEvent(request, { timeoutMs });
        sent++;
        if (attempt > 1) {
          retried++;
          log(`✓ ${label} sent on attempt ${attempt}`);
        }
        const decision = DECISIONS[res.decision] ?? "unspecified";
        if (decision !== "unspecified") decisions[decision]++;
        options.onResult?.({ line, clientEventId: event.clientEventId, eventId: res.eventId, decision, attempts: attempt });
        return;
      } catch (error) {
        failure = ConnectError.from(error);
      }
      failedAttempts++;
      const lose = (reason: string) => {
        lostEvents.push({ line, clientEventId: event.clientEventId, reason });
        log(`✗ ${label} LOST: ${reason}`);
      };
      if (PERMANENT.has(failure.code)) return lose(`${failure.message} (not retried: retrying cannot help)`);
      if (attempt >= maxAttempts) return lose(`${failure.message} (gave up after ${attempt} attempts)`);
      if (signal?.aborted) return lose(`${failure.message} (interrupted before a retry)`);
      const ceiling = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
      const delay = ceiling / 2 + random() * (ceiling / 2);
      log(`⚠ ${label} not sent (attempt ${attempt}/${maxAttempts}): ${failure.message}; retrying in ${formatDuration(delay)}`);
      try {
        await sleep(delay, undefined, signal ? { signal } : {});
      } catch {
        return lose(`${failure.message} (interrupted before a retry)`);
      }
    }
  };

  let position = 0;
  for await (const item of untilAborted(options.source, signal)) {
    position++;
    if (typeof item === "string" && item.trim() === "") continue; // blank lines are not events
    read++;
    let event: AgentEvent;
    try {
      event = typeof item === "string" ? parseEventLine(item) : item;
    } catch (error) {
      malformed++;
      log(`⚠ Line ${position} skipped: ${(error as Error).message}`);
      continue;
    }
    await send(event, position);
  }

  if (own) {
    try {
      await client.endSession({ sessionId }, { timeoutMs });
    } catch (error) {
      log(`✗ Could not end session ${sessionId}: ${ConnectError.from(error).message}`);
    }
  }
  return {
    sessionId,
    read,
    sent,
    lost: lostEvents.length,
    lostEvents,
    retried,
    failedAttempts,
    malformed,
    decisions,
  };
}

function parseFlags() {
  return parseCli({
    command: "tsx examples/events.ts",
    synopsis: "--issuer <url> --client-id <id> --server <url> [flags] [<events.jsonl> | -]",
    description:
      "Sends agent hook events, one JSON object per line, from a file or stdin, with IngestEvent;\n" +
      "each answer goes to stdout as a JSON line. A failed send is retried with backoff, never dropped quietly.",
    flags: {
      issuer: { type: "string", kind: "url", env: "OIDC_ISSUER", required: true, help: "the OIDC issuer" },
      "client-id": { type: "string", value: "<id>", env: "OIDC_CLIENT_ID", required: true, help: "this client's id at the issuer" },
      server: { type: "string", kind: "url", env: "AGENT_SERVER_URL", required: true, help: "the AgentSessionService base URL" },
      file: {
        type: "string",
        value: "<events.jsonl>",
        help: 'the events, one JSON object a line; "-" or none: stdin (or give it as the argument)',
      },
      session: { type: "string", value: "<id>", help: "send into this session (default: open one, end it when done)" },
      "max-attempts": { type: "string", kind: "integer", min: 1, default: "8", help: "sends per event before it is given up as lost" },
      store: { type: "string", value: "<store>", help: `where the login is kept: ${STORE_HELP}` },
      login: {
        type: "string",
        choices: ["device", "browser", "none"],
        help: "how to log in when none is stored (default: browser on a desktop, else device)",
      },
      "agent-name": { type: "string", value: "<name>", default: "example-agent", help: "the agent name of a session opened here" },
      http2: { type: "boolean", help: "HTTP/2 instead of HTTP/1.1" },
    },
    positionals: { max: 1 },
    notes: ['a line: {"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{...},"client_event_id":"..."}'],
    example: "tsx examples/events.ts --issuer https://login.example.com --client-id my-cli --server https://api.example.com events.jsonl",
  });
}

async function main(): Promise<number> {
  const { values, positionals } = parseFlags();
  if (values.file !== undefined && positionals.length > 0)
    usageError(`give the events file once: --file ${values.file} or ${positionals[0]}`);
  const file = values.file ?? positionals[0] ?? "-";
  if (file !== "-" && !existsSync(file)) usageError(`no such events file: ${JSON.stringify(file)}`);
  return withLoggedInTransport(values, async (transport) => {
    const summary = await runEvents({
      transport,
      source: readLines(file),
      ...(values.session !== undefined ? { sessionId: values.session } : {}),
      agentName: values["agent-name"],
      retry: { maxAttempts: Number(values["max-attempts"]) },
      signal: stopOnCtrlC(),
      onResult: (r) =>
        process.stdout.write(
          `${JSON.stringify({ line: r.line, client_event_id: r.clientEventId, event_id: r.eventId, decision: r.decision })}\n`,
        ),
    });
    stderr(
      `events: read ${summary.read}, sent ${summary.sent}, lost ${summary.lost}, retried ${summary.retried}, malformed ${summary.malformed}`,
    );
    for (const lost of summary.lostEvents) stderr(`  lost: line ${lost.line}, client_event_id ${lost.clientEventId}: ${lost.reason}`);
    return summary.lost === 0 && summary.malformed === 0 ? 0 : 1;
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runMain("events", main);

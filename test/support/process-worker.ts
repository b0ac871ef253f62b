/**
 * One OS process of a user sharing a login with others, for the multi-process tests.
 *
 * Usage: node --import tsx test/support/process-worker.ts <mode> [options]
 *
 *   call   its own token manager on the shared store + createAuthInterceptor + a Connect
 *          client; prints {"kind":"ready"}, waits for a "go" line on stdin, then calls
 *          EchoService.Say every --interval-min..--interval-max ms for --duration-ms and
 *          prints one report line (see WorkerReport). SIGTERM ends the run early: the
 *          call in flight is cancelled (not counted as a failure) and the report printed.
 *   login  prints {"kind":"ready"}, reads a token endpoint response (JSON) on stdin,
 *          stores it with setTokens (under the store's lock), prints
 *          {"kind":"stored","at":<epoch ms>}.
 *
 * Options: --issuer --client-id --server (call mode) --store file|keyring --path (file)
 * --service --account (keyring) --duration-ms --interval-min --interval-max
 * --call-timeout-ms (default 25 s) --uncoordinated (the baseline a user would write without
 * connect-oidc's coordination: the store is read once at startup, then only written; no lock).
 * --dpop: the token manager with `dpop: true`; in login mode the response on stdin then
 * carries the login's key as `dpopJwk: { algorithm, publicJwk, privateJwk }` (a CryptoKeyPair
 * does not travel as JSON), imported here as the login's `dpopKey`.
 * --resource <indicator>=<server URL> (repeatable): a client of that server with
 * `tokens.forResource(indicator)`; the calls then go round the main server and these.
 *
 * Nothing printed holds token material: failures are reported by their codes only.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, type TokenEvent, type TokenProvider, type TokenStore } from "../../src/index.js";
import { fileStore, keyringStore } from "../../src/node.js";
import { importLoginKey } from "./dpop-login.js";
import { exitFlushed, refreshEnded } from "./worker-end.js";

/** The last line a `call` worker prints. */
export interface WorkerReport {
  readonly kind: "report";
  readonly pid: number;
  readonly startedAt: number;
  readonly endedAt: number;
  /** "duration" or the signal that ended the run. */
  readonly endedBy: string;
  readonly calls: number;
  readonly ok: number;
  readonly failures: number;
  /** Failed calls by `<Connect code>/<cause code or name>[/<store reason>]`. */
  readonly failureCodes: Record<string, number>;
  /** Calls cut short by SIGTERM (not failures). */
  readonly cancelled: number;
  readonly maxCallMs: number;
  /** Calls that took over 1 s (waited for a refresh or the lock). */
  readonly slowCalls: number;
  readonly firstFailureAt: number | undefined;
  readonly lastFailureAt: number | undefined;
  readonly okAfterLastFailure: number;
  /** Token events by `type` or `type:reason` (refreshed) or `type:terminal|transient`. */
  readonly events: Record<string, number>;
  /** Every token event with its time (epoch ms), in order. */
  readonly timeline: readonly { readonly at: number; readonly event: string }[];
  /** Why each refresh failed: the error's chain as names, codes and reasons only (no message, no token). */
  readonly refreshFailures?: readonly string[];
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    issuer: { type: "string" },
    "client-id": { type: "string" },
    server: { type: "string" },
    store: { type: "string" },
    path: { type: "string" },
    service: { type: "string" },
    account: { type: "string" },
    "duration-ms": { type: "string", default: "15000" },
    "interval-min": { type: "string", default: "50" },
    "interval-max": { type: "string", default: "100" },
    "call-timeout-ms": { type: "string", default: "25000" },
    uncoordinated: { type: "boolean", default: false },
    dpop: { type: "boolean", default: false },
    resource: { type: "string", multiple: true, default: [] },
  },
});

const mode = positionals[0];
const print = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

function required(name: keyof typeof values): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") throw new Error(`process-worker: --${name} is required`);
  return value;
}

function openStore(): TokenStore {
  const kind = required("store");
  const store =
    kind === "file"
      ? fileStore(required("path"))
      : kind === "keyring"
        ? keyringStore({ service: required("service"), account: required("account") })
        : undefined;
  if (store === undefined) throw new Error(`process-worker: unknown store ${kind}`);
  return values.uncoordinated ? uncoordinated(store) : store;
}

/** Each process on its own: reads the shared login once, then refreshes it alone and writes it back. */
function uncoordinated(store: TokenStore): TokenStore {
  let first: ReturnType<TokenStore["load"]> | undefined;
  return {
    load: () => (first ??= store.load()),
    save: (tokens) => store.save(tokens),
    clear: () => store.clear(),
  };
}

function describeEvent(event: TokenEvent): string {
  switch (event.type) {
    case "refreshed":
      // Counted with the main token's refreshes; a resource's is also counted on its own (`resource-refreshed`).
      return `refreshed:${event.reason}`;
    case "refresh-failed":
      return `refresh-failed:${event.terminal ? "terminal" : "transient"}`;
    default:
      return event.type;
  }
}

/** A failure as codes only: the Connect code, then the cause's code (or name) and store reason. */
function failureCode(error: unknown): string {
  const parts: string[] = [];
  if (error instanceof ConnectError) {
    parts.push(Code[error.code] ?? String(error.code));
    const cause = error.cause as { code?: unknown; name?: unknown; reason?: unknown } | undefined;
    if (cause !== undefined && cause !== null) {
      parts.push(typeof cause.code === "string" ? cause.code : String(cause.name ?? "unknown"));
      if (typeof cause.reason === "string") parts.push(cause.reason);
    }
  } else {
    const e = error as { code?: unknown; name?: unknown } | undefined;
    parts.push(typeof e?.code === "string" ? e.code : String(e?.name ?? "unknown"));
  }
  return parts.join("/");
}

/** An error and its causes as `name:code:reason` links, outermost first. */
function errorChain(error: unknown): string {
  const links: string[] = [];
  for (
    let e = error as { name?: unknown; code?: unknown; reason?: unknown; cause?: unknown } | undefined;
    e != null && links.length < 6;
    e = e.cause as typeof e
  ) {
    links.push([e.name, e.code, e.reason].filter((x) => typeof x === "string").join(":"));
  }
  return links.join(" > ");
}

async function stdinLines(): Promise<AsyncIterator<string>> {
  return createInterface({ input: process.stdin })[Symbol.asyncIterator]();
}

async function runCalls(): Promise<void> {
  const issuer = required("issuer");
  const clientId = required("client-id");
  const durationMs = Number(values["duration-ms"]);
  const intervalMin = Number(values["interval-min"]);
  const intervalMax = Number(values["interval-max"]);
  const callTimeoutMs = Number(values["call-timeout-ms"]);

  const events: Record<string, number> = {};
  const timeline: { at: number; event: string }[] = [];
  const refreshFailures: string[] = [];
  const tokens = createTokenManager({
    issuer,
    clientId,
    store: openStore(),
    allowInsecureRequests: true,
    ...(values.dpop ? { dpop: true as const } : {}),
    onEvent(event) {
      const name = describeEvent(event);
      events[name] = (events[name] ?? 0) + 1;
      if (event.type === "refreshed" && event.resource !== undefined)
        events["resource-refreshed"] = (events["resource-refreshed"] ?? 0) + 1;
      timeline.push({ at: Date.now(), event: name });
      if (event.type === "refresh-failed") refreshFailures.push(errorChain(event.error));
    },
  });
  const clientOf = (baseUrl: string, provider: TokenProvider) =>
    createClient(EchoService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(provider)] }));
  const clients = [
    clientOf(required("server"), tokens),
    ...(values.resource ?? []).map((spec) => {
      const at = spec.indexOf("=");
      return clientOf(spec.slice(at + 1), tokens.forResource(spec.slice(0, at)));
    }),
  ];

  let endedBy = "duration";
  const stop = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      endedBy = signal;
      stop.abort();
    });
  }

  const lines = await stdinLines();
  print({ kind: "ready", pid: process.pid });
  for (;;) {
    const line = await Promise.race([
      lines.next(),
      new Promise<undefined>((resolve) => stop.signal.addEventListener("abort", () => resolve(undefined))),
    ]);
    if (line === undefined || line.done || line.value.trim() === "go") break;
  }

  const startedAt = Date.now();
  const deadline = startedAt + durationMs;
  let calls = 0;
  let ok = 0;
  let failures = 0;
  let cancelled = 0;
  let maxCallMs = 0;
  let slowCalls = 0;
  let firstFailureAt: number | undefined;
  let lastFailureAt: number | undefined;
  let okAfterLastFailure = 0;
  const failureCodes: Record<string, number> = {};

  while (!stop.signal.aborted && Date.now() < deadline) {
    const began = Date.now();
    calls += 1;
    try {
      const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(callTimeoutMs)]);
      await clients[calls % clients.length]!.say({ text: `call ${calls}` }, { signal });
      ok += 1;
      okAfterLastFailure += 1;
    } catch (error) {
      if (stop.signal.aborted) {
        cancelled += 1;
        calls -= 1;
      } else {
        failures += 1;
        const code = failureCode(error);
        failureCodes[code] = (failureCodes[code] ?? 0) + 1;
        firstFailureAt ??= Date.now();
        lastFailureAt = Date.now();
        okAfterLastFailure = 0;
      }
    }
    const took = Date.now() - began;
    maxCallMs = Math.max(maxCallMs, took);
    if (took > 1_000) slowCalls += 1;
    const pause = intervalMin + Math.random() * (intervalMax - intervalMin);
    await sleep(pause, undefined, { signal: stop.signal }).catch(() => {});
  }

  await refreshEnded(tokens);
  tokens.close();
  const report: WorkerReport = {
    kind: "report",
    pid: process.pid,
    startedAt,
    endedAt: Date.now(),
    endedBy,
    calls,
    ok,
    failures,
    failureCodes,
    cancelled,
    maxCallMs,
    slowCalls,
    firstFailureAt,
    lastFailureAt,
    okAfterLastFailure,
    events,
    timeline,
    refreshFailures,
  };
  print(report);
}

async function runLogin(): Promise<void> {
  const chunks: Buffer[] = [];
  print({ kind: "ready", pid: process.pid });
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const { dpopJwk, ...response } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const tokens = createTokenManager({
    issuer: required("issuer"),
    clientId: required("client-id"),
    store: openStore(),
    allowInsecureRequests: true,
    ...(values.dpop ? { dpop: true as const } : {}),
  });
  await tokens.setTokens(dpopJwk === undefined ? response : { ...response, dpopKey: await importLoginKey(dpopJwk) });
  tokens.close();
  print({ kind: "stored", at: Date.now() });
}

try {
  if (mode === "call") await runCalls();
  else if (mode === "login") await runLogin();
  else throw new Error(`process-worker: unknown mode ${mode}`);
  // Keep-alive sockets and the stdin reader would hold the process open.
  await exitFlushed(0);
} catch (error) {
  const e = error as { name?: string; code?: unknown; reason?: unknown };
  print({ kind: "error", name: e?.name, code: e?.code, reason: e?.reason });
  await exitFlushed(1);
}

/**
 * `npm run demo`: connect-oidc keeping two clients authenticated across many token
 * lifetimes, in one command, with nothing but `npm ci`.
 *
 * By default everything is embedded and on loopback: a real OpenID provider
 * (oidc-provider, access tokens living 10 s), the example AgentSessionService (verifies
 * every JWT with jose, clock tolerance 0), a headless login, then for `--duration`
 * (default 60 s) the heartbeat client (every 1 s) and the event client (a generated
 * stream, 4 a second), each with its own token manager over one shared token file —
 * as two processes of one user would run. Midway the server revokes the current access
 * token once: the next calls are refused and must be retried with a new token (the
 * reactive path). Token events go to stderr as they happen; the summary goes to stdout.
 * Exit 0 only when no heartbeat failed, no event was lost or needed a second send, no
 * refresh failed, at least 3 proactive refreshes and at least 1 reactive retry happened.
 *
 *   npm run demo                                   # about a minute
 *   npm run demo -- --duration 2h                  # or 90s, 5m, 1h30m
 *   npm run demo -- --issuer https://login.example.com --client-id my-cli \
 *                   --server https://api.example.com            # a real IdP and server
 *   npm run demo -- --issuer … --client-id my-cli --audience https://api.example.com
 *                                                  # a real IdP, the example server here
 *
 * With a real issuer the login is interactive (`--login device|browser`), or none with
 * `--client-secret` (client credentials). The token lifetime is then the IdP's: proactive
 * refreshes are only required with the embedded IdP, and the revocation (reactive path)
 * only happens when the example server runs here.
 *
 * `--dpop`: sender-constrained tokens (RFC 9449). Both managers are created with `dpop: true`;
 * the login makes one key pair, kept with the login in the shared token file, and binds the
 * tokens to it; every call carries `authorization: DPoP <token>` and a fresh proof. With the
 * embedded IdP and server, both require DPoP nonces, and the server's nonce rotates every
 * 5 s (`--dpop-nonce-every`) — the clients follow it from every answer, with no failed call.
 * The summary adds the proofs the server checked and the nonce challenges the clients met.
 *
 *   npm run demo -- --dpop
 *
 * `--record-tokens <file>` exists for the leak test only: it writes every token the demo
 * handled (and, with --dpop, the private key's JWK `d`) to that file (mode 0600), so the
 * test can check that none of them was printed.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createContextKey, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  createAuthInterceptor,
  createTokenManager,
  type RefreshReason,
  type TokenEndpointResponse,
  type TokenEvent,
  type TokenManager,
  type StoredTokens,
  type TokenStore,
} from "connect-oidc";
import { fileStore } from "connect-oidc/node";
import type { AgentEvent, EventsSummary } from "./events.js";
import { runEvents } from "./events.js";
import { type HeartbeatResult, runHeartbeat } from "./heartbeat.js";
import { parseCli, runMain, usageError } from "./lib/cli.js";
import { formatDuration, parseDuration } from "./lib/duration.js";
import { defaultLoginMethod, isLoopback, login, type LoginMethod } from "./lib/login.js";
import { stopOnCtrlC } from "./lib/signals.js";
import { describeTokenEvent } from "./lib/token-events.js";
import type { ExampleServerOptions, ExampleServerStats } from "./server.js";
import { startExampleServer } from "./server.js";

const stderr = (line: string) => process.stderr.write(`${line}\n`);

interface Setup {
  readonly description: string;
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret?: string;
  readonly scope?: string;
  readonly resource?: string;
  readonly serverUrl: string;
  /** Server-side revocation, when the example server runs here. */
  readonly revoke?: (token: string) => void;
  readonly serverStats?: ExampleServerStats;
  /** Proactive refreshes can be required only when the token lifetime is known to be short. */
  readonly requireProactive: boolean;
  /** The first token, for a user login; undefined for client credentials. */
  readonly login?: () => Promise<TokenEndpointResponse>;
  close(): Promise<void>;
}

/** With --dpop: the server's nonce rotation (undefined: bearer tokens). */
type DpopSetting = ExampleServerOptions["dpop"];

async function embeddedSetup(tokenTtlMs: number, http2: boolean, dpop: DpopSetting): Promise<Setup> {
  const { startTestIdentityProvider } = await import("connect-oidc/testing");
  const idp = await startTestIdentityProvider({
    accessTokenTtl: Math.max(1, Math.round(tokenTtlMs / 1000)),
    ...(dpop ? { dpop: { requireNonce: true } } : {}),
  });
  const server = await startExampleServer({
    issuer: idp.issuer,
    audience: idp.audience,
    jwksUri: idp.jwksUri,
    http2,
    ...(dpop ? { dpop } : {}),
  });
  const nonceEvery = dpop?.nonceRotateMs === undefined ? "" : `, nonce rotating every ${formatDuration(dpop.nonceRotateMs)}`;
  stderr(
    `Identity provider  ${idp.issuer} (oidc-provider, access tokens live ${formatDuration(tokenTtlMs)}${dpop ? ", DPoP-bound, nonces required" : ""})`,
  );
  stderr(
    `Example server     ${server.url} (${http2 ? "h2c" : "HTTP/1.1"}, verifies every JWT with jose${dpop ? `, and every DPoP proof${nonceEvery}` : ""})`,
  );
  return {
    description: `embedded identity provider and server, access tokens living ${formatDuration(tokenTtlMs)}`,
    issuer: idp.issuer,
    clientId: idp.clientId,
    serverUrl: server.url,
    revoke: (token) => server.revoke(token),
    serverStats: server.stats,
    requireProactive: true,
    // Headless authorization code + PKCE; with --dpop bound to a new ES256 key (extractable:
    // the token file keeps it as JWKs), handed back as the response's dpopKey.
    login: () => idp.login(dpop ? { dpop: true } : {}),
    async close() {
      await server.close();
      await idp.close();
    },
  };
}

async function realSetup(values: Flags, http2: boolean, dpop: DpopSetting): Promise<Setup> {
  const issuer = values.issuer!;
  const clientId = values["client-id"];
  if (!clientId) usageError("--client-id is required with --issuer");
  const method = (values.login ?? defaultLoginMethod()) as LoginMethod;
  if (method !== "device" && method !== "browser") usageError("--login: expected device or browser");
  const common = {
    issuer,
    clientId,
    ...(values["client-secret"] ? { clientSecret: values["client-secret"] } : {}),
    ...(values.scope ? { scope: values.scope } : {}),
    ...(values.resource ? { resource: values.resource } : {}),
    requireProactive: false,
    ...(values["client-secret"]
      ? {}
      : {
          login: () =>
            login(method, {
              issuer,
              clientId,
              allowInsecureRequests: isLoopback(issuer),
              ...(values.scope ? { scope: values.scope } : {}),
              ...(values.resource ? { resource: values.resource } : {}),
              ...(dpop ? { dpop: true } : {}),
            }),
        }),
  };
  if (values.server) {
    stderr(`Identity provider  ${issuer}`);
    stderr(`Server             ${values.server} (no revocation hook: the reactive path is not forced)`);
    return { ...common, description: `${issuer}, server ${values.server}`, serverUrl: values.server, close: async () => {} };
  }
  if (!values.audience) usageError("with --issuer, give --server <url>, or --audience <api identifier> to run the example server here");
  const server = await startExampleServer({ issuer, audience: values.audience, http2, ...(dpop ? { dpop } : {}) });
  stderr(`Identity provider  ${issuer}`);
  stderr(`Example server     ${server.url} (${http2 ? "h2c" : "HTTP/1.1"}, audience ${values.audience}${dpop ? ", DPoP" : ""})`);
  return {
    ...common,
    description: `${issuer}, the example server here`,
    serverUrl: server.url,
    revoke: (token) => server.revoke(token),
    serverStats: server.stats,
    close: () => server.close(),
  };
}

type Flags = ReturnType<typeof parseFlags>["values"];

function parseFlags() {
  return parseCli({
    command: "npm run demo --",
    description:
      "connect-oidc keeping two clients (heartbeats and events) authenticated across many token\n" +
      "lifetimes. By default everything is embedded: an identity provider with short-lived tokens, the\n" +
      "example server, a headless login; midway the server revokes the current token once.\n" +
      "Exit 0 only when nothing failed, with >= 3 proactive refreshes and >= 1 reactive retry.",
    flags: {
      duration: { type: "string", kind: "duration", default: "60s", help: "how long to run" },
      interval: { type: "string", kind: "duration", default: "1s", help: "time between heartbeats" },
      "event-interval": { type: "string", kind: "duration", default: "250ms", help: "time between events" },
      "token-ttl": { type: "string", kind: "duration", default: "10s", help: "access token lifetime of the embedded identity provider" },
      http2: { type: "boolean", help: "HTTP/2 (h2c) instead of HTTP/1.1" },
      dpop: { type: "boolean", help: "DPoP-bound tokens (RFC 9449): a key per login, a signed proof on every call" },
      "dpop-nonce-every": {
        type: "string",
        kind: "duration",
        default: "5s",
        help: "with --dpop: how often the example server's nonce rotates",
      },
      issuer: { type: "string", kind: "url", help: "a real issuer instead of the embedded one" },
      "client-id": { type: "string", value: "<id>", help: "the client id at --issuer (required with --issuer)" },
      "client-secret": { type: "string", value: "<secret>", help: "log in with client credentials instead of interactively" },
      login: { type: "string", choices: ["device", "browser"], help: "interactive login (default: browser on a desktop, else device)" },
      scope: { type: "string", value: "<scopes>", help: "scopes to ask for" },
      resource: { type: "string", kind: "uri", help: "the resource indicator (RFC 8707) to ask tokens for" },
      server: { type: "string", kind: "url", help: "with --issuer: a real AgentSessionService" },
      audience: { type: "string", value: "<api identifier>", help: "with --issuer: run the example server here, for this audience" },
      "record-tokens": { type: "string", value: "<file>", hidden: true, help: "(the leak test) write every token handled to this file" },
    },
    notes: ["with --issuer, give --client-id and either --server or --audience"],
    example: "npm run demo -- --duration 5m",
  });
}

/** Counts every token event of both managers, and prints it to stderr. */
function createEventLog() {
  const refreshes: Record<RefreshReason, number> = { proactive: 0, expired: 0, rejected: 0, startup: 0 };
  const counts = { adopted: 0, refreshFailed: 0, reauthRequired: 0 };
  const waiters = new Set<() => void>();
  const onEvent = (who: string) => (event: TokenEvent) => {
    stderr(`${who} ${describeTokenEvent(event)}`);
    if (event.type === "refreshed") {
      refreshes[event.reason]++;
      for (const wake of waiters) wake();
      waiters.clear();
    } else if (event.type === "adopted") counts.adopted++;
    else if (event.type === "refresh-failed") counts.refreshFailed++;
    else counts.reauthRequired++;
  };
  /** Resolves at the next refresh from the identity provider (either manager). */
  const nextRefresh = () => new Promise<void>((resolve) => waiters.add(resolve));
  return { refreshes, counts, onEvent, nextRefresh };
}

/**
 * Reactive retries, seen from the client: a call with an attempt refused as
 * Unauthenticated that still succeeded. The outer interceptor sees the call, the inner
 * one (after the auth interceptor) every attempt; they meet in the call's context values.
 */
function createRetryObserver(recordToken?: (token: string | undefined) => void) {
  const kRefused = createContextKey<{ count: number; nonce: number } | undefined>(undefined, {
    description: "refused attempts of this call",
  });
  const stats = { refusedAttempts: 0, reactiveRetries: 0, nonceRetries: 0 };
  const call: Interceptor = (next) => async (req) => {
    const refused = { count: 0, nonce: 0 };
    req.contextValues.set(kRefused, refused);
    const res = await next(req);
    if (refused.count > refused.nonce) stats.reactiveRetries++;
    else if (refused.nonce > 0) stats.nonceRetries++;
    return res;
  };
  const attempt: Interceptor = (next) => async (req) => {
    recordToken?.(/^(?:Bearer|DPoP) (\S+)$/.exec(req.header.get("authorization") ?? "")?.[1]);
    try {
      return await next(req);
    } catch (error) {
      const refusal = ConnectError.from(error);
      if (refusal.code === Code.Unauthenticated) {
        stats.refusedAttempts++;
        const refused = req.contextValues.get(kRefused);
        if (refused) refused.count++;
        // RFC 9449 §9: a nonce challenge is answered by re-sending with the nonce, not by a new token.
        if (refused && /error="use_dpop_nonce"/.test(refusal.metadata.get("www-authenticate") ?? "")) refused.nonce++;
      }
      throw error;
    }
  };
  return { stats, call, attempt };
}

/** A store that notes every token passing through it (only with --record-tokens). */
function recordingStore(inner: TokenStore, record: (token: string | undefined) => void): TokenStore {
  return {
    async load() {
      const tokens = await inner.load();
      record(tokens?.accessToken);
      record(tokens?.refreshToken);
      record(privateKeyOf(tokens));
      return tokens;
    },
    async save(tokens) {
      record(tokens.accessToken);
      record(tokens.refreshToken);
      record(privateKeyOf(tokens));
      return inner.save(tokens);
    },
    clear: () => inner.clear(),
    ...(inner.lock ? { lock: <T>(fn: () => Promise<T>, signal?: AbortSignal) => inner.lock!(fn, signal) } : {}),
  };
}

/** The private part (`d`) of a login's DPoP key, as the token file keeps it; marked for the leak test. */
function privateKeyOf(tokens: StoredTokens | undefined): string | undefined {
  const key = tokens?.dpopKey;
  const d = key && "privateJwk" in key ? key.privateJwk.d : undefined;
  return d === undefined ? undefined : `${PRIVATE_KEY_MARK}${d}`;
}

/** How --record-tokens marks private key material (the rest of the line is the JWK's `d`). */
const PRIVATE_KEY_MARK = "jwk-d:";

/** Resolves when `promise` settles or after `ms`, whichever comes first; rejects when `signal` aborts. */
function settledWithin(promise: Promise<unknown>, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve();
    };
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(done, ms);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(done, done);
  });
}

/** A stream of plausible agent hook events, one every `everyMs`, until `untilMs` or abort. */
async function* generatedEvents(everyMs: number, untilMs: number, signal: AbortSignal): AsyncGenerator<AgentEvent> {
  const tools = [
    { tool: "Read", input: { file_path: "src/index.ts" }, output: { lines: 42 } },
    { tool: "Bash", input: { command: "npm test" }, output: { exit_code: 0 } },
    { tool: "Edit", input: { file_path: "README.md", old_string: "a", new_string: "b" }, output: { ok: true } },
    { tool: "WebFetch", input: { url: "https://example.com/docs" }, output: { status: 200 } },
    { tool: "Bash", input: { command: "rm -rf build/" }, output: { exit_code: 0 } },
  ];
  for (let n = 0; Date.now() < untilMs && !signal.aborted; n++) {
    const { tool, input, output } = tools[Math.floor(n / 2) % tools.length]!;
    const pre = n % 2 === 0;
    yield {
      hookEventName: pre ? "PreToolUse" : "PostToolUse",
      toolName: tool,
      toolInput: input,
      ...(pre ? {} : { toolOutput: output }),
      clientEventId: randomUUID(),
    };
    try {
      await sleep(everyMs, undefined, { signal });
    } catch {
      return;
    }
  }
}

async function main(): Promise<number> {
  const { values } = parseFlags();
  if (values.issuer) {
    if (!values["client-id"]) usageError("--client-id is required with --issuer");
    if (!values.server && !values.audience) {
      usageError("with --issuer, give --server <url>, or --audience <api identifier> to run the example server here");
    }
  }
  const durationMs = parseDuration(values.duration);
  const intervalMs = parseDuration(values.interval);
  const eventIntervalMs = parseDuration(values["event-interval"]);
  const http2 = values.http2;
  const dpop: DpopSetting = values.dpop ? { nonceRotateMs: parseDuration(values["dpop-nonce-every"]) } : undefined;
  const signal = stopOnCtrlC();

  const recorded = values["record-tokens"] ? new Set<string>() : undefined;
  const recordToken = recorded ? (token: string | undefined) => token && recorded.add(token) : undefined;

  const setup = values.issuer ? await realSetup(values, http2, dpop) : await embeddedSetup(parseDuration(values["token-ttl"]), http2, dpop);
  const dir = await mkdtemp(join(tmpdir(), "connect-oidc-demo-"));
  const managers: TokenManager[] = [];
  try {
    // One token file, two managers: the two clients share one login and one refresh, as two processes would.
    const store = () => {
      const file = fileStore(join(dir, "tokens.json"));
      return recordToken ? recordingStore(file, recordToken) : file;
    };
    const events = createEventLog();
    const manager = (who: string) => {
      const tokens = createTokenManager({
        issuer: setup.issuer,
        clientId: setup.clientId,
        ...(setup.clientSecret ? { clientSecret: setup.clientSecret, grant: "client_credentials" as const } : {}),
        ...(setup.scope ? { scope: setup.scope } : {}),
        ...(setup.resource ? { resource: setup.resource } : {}),
        ...(dpop ? { dpop: true as const } : {}),
        store: store(),
        allowInsecureRequests: isLoopback(setup.issuer),
        onEvent: events.onEvent(who),
      });
      managers.push(tokens);
      return tokens;
    };
    const heartbeatTokens = manager("[heartbeat]");
    const eventTokens = manager("[events]   ");

    if (setup.login) {
      const response = await setup.login();
      for (const key of ["access_token", "refresh_token", "id_token"] as const) {
        const value = response[key];
        if (typeof value === "string") recordToken?.(value);
      }
      const d = response.dpopKey ? (await crypto.subtle.exportKey("jwk", response.dpopKey.keyPair.privateKey)).d : undefined;
      if (d !== undefined) recordToken?.(`${PRIVATE_KEY_MARK}${d}`);
      await heartbeatTokens.setTokens(response);
      stderr("✓ Logged in");
    }

    const observer = createRetryObserver(recordToken);
    const transport = (tokens: TokenManager): Transport =>
      createConnectTransport({
        baseUrl: setup.serverUrl,
        httpVersion: http2 ? "2" : "1.1",
        interceptors: [observer.call, createAuthInterceptor(tokens), observer.attempt],
      });

    const started = Date.now();
    const endsAt = started + durationMs;
    stderr(
      `Running for ${formatDuration(durationMs)}: a heartbeat every ${formatDuration(intervalMs)}, an event every ${formatDuration(eventIntervalMs)} (Ctrl-C stops early)`,
    );

    // Revoke the current token once, at 40 % of the run, right after a refresh (so the
    // token has most of its life left and only the reactive path can replace it in time).
    const revocationStop = new AbortController();
    const revocationSignal = AbortSignal.any([signal, revocationStop.signal]);
    const revocation = (async (): Promise<string | undefined> => {
      const revoke = setup.revoke;
      if (!revoke) return "no revocation hook: the server is not the example server here";
      try {
        await sleep(durationMs * 0.4, undefined, { signal: revocationSignal });
        await settledWithin(events.nextRefresh(), 15_000, revocationSignal);
        await sleep(1000, undefined, { signal: revocationSignal });
      } catch {
        return "the run ended before the revocation";
      }
      if (Date.now() > endsAt - 3 * intervalMs) return "the run is too short for the revocation";
      revoke(await heartbeatTokens.getAccessToken());
      stderr("⚡ The server revoked the current access token: the next calls are refused and retried with a new one");
      return undefined;
    })();

    const [heartbeat, sent] = await Promise.all([
      runHeartbeat({ transport: transport(heartbeatTokens), agentName: "demo-heartbeat", intervalMs, durationMs, signal }),
      runEvents({
        transport: transport(eventTokens),
        agentName: "demo-events",
        source: generatedEvents(eventIntervalMs, endsAt, signal),
        signal,
      }),
    ]);
    revocationStop.abort();
    const revocationSkipped = await revocation;
    const elapsedMs = Date.now() - started;

    const report = summarize({
      setup,
      elapsedMs,
      heartbeat,
      sent,
      refreshes: events.refreshes,
      counts: events.counts,
      retries: observer.stats,
      revocationSkipped,
      dpop: dpop !== undefined,
    });
    process.stdout.write(report.text);
    return report.ok ? 0 : 1;
  } finally {
    for (const tokens of managers) tokens.close();
    await setup.close();
    await rm(dir, { recursive: true, force: true });
    if (recorded && values["record-tokens"]) {
      await writeFile(values["record-tokens"], [...recorded].map((t) => `${t}\n`).join(""), { mode: 0o600 });
    }
  }
}

function summarize(r: {
  setup: Setup;
  elapsedMs: number;
  heartbeat: HeartbeatResult;
  sent: EventsSummary;
  refreshes: Record<RefreshReason, number>;
  counts: { adopted: number; refreshFailed: number; reauthRequired: number };
  retries: { refusedAttempts: number; reactiveRetries: number; nonceRetries: number };
  revocationSkipped: string | undefined;
  dpop: boolean;
}): { text: string; ok: boolean } {
  const { heartbeat, sent, refreshes, counts, retries, setup } = r;
  const server = setup.serverStats;
  const rows: Array<[string, string]> = [
    ["heartbeats", `sent ${heartbeat.sent}, failed ${heartbeat.failed}`],
    [
      "events",
      `sent ${sent.sent}, lost ${sent.lost} (retried ${sent.retried}; ${sent.decisions.allow} allow, ${sent.decisions.deny} deny, ${sent.decisions.ask} ask${server ? `; server stored ${server.events}` : ""})`,
    ],
    [
      "refreshes",
      `proactive ${refreshes.proactive}, expired ${refreshes.expired}, rejected ${refreshes.rejected}, startup ${refreshes.startup} (adopted ${counts.adopted}, failed ${counts.refreshFailed})`,
    ],
    ["reactive retries", `${retries.reactiveRetries} (calls refused as Unauthenticated, then accepted with a new token)`],
  ];
  if (r.dpop) {
    rows.push([
      "DPoP",
      `nonce retries ${retries.nonceRetries} (calls re-sent with the server's new nonce, no new token)${server ? `; proofs accepted ${server.accepted}, refused ${server.rejected.proof}` : ""}`,
    ]);
  }
  if (server) {
    const s = server.rejected;
    const dpopRefusals = r.dpop ? `, nonce ${s.nonce}, proof ${s.proof}` : "";
    rows.push([
      "server refusals",
      `revoked ${s.revoked}, expired ${s.expired}, invalid ${s.invalid}, missing ${s.missing + s.malformed}${dpopRefusals}`,
    ]);
  }

  const problems: string[] = [];
  if (heartbeat.failed > 0) problems.push(`${heartbeat.failed} heartbeat(s) failed`);
  if (heartbeat.sent === 0) problems.push("no heartbeat was sent");
  if (!heartbeat.ended) problems.push("the heartbeat session was not ended");
  if (sent.lost > 0) problems.push(`${sent.lost} event(s) lost`);
  if (sent.failedAttempts > 0) problems.push(`${sent.failedAttempts} event send(s) failed and had to be re-sent by the event client`);
  if (sent.sent === 0) problems.push("no event was sent");
  if (server && server.events !== sent.sent) problems.push(`the server stored ${server.events} events, the client sent ${sent.sent}`);
  if (counts.refreshFailed > 0) problems.push(`${counts.refreshFailed} refresh(es) failed`);
  if (counts.reauthRequired > 0) problems.push("re-login was required");
  if (setup.requireProactive && refreshes.proactive < 3)
    problems.push(`only ${refreshes.proactive} proactive refreshes (need ≥ 3: run longer)`);
  if (server && server.rejected.proof > 0) problems.push(`the server refused ${server.rejected.proof} DPoP proof(s)`);
  if (setup.revoke && retries.reactiveRetries < 1) {
    problems.push(`no reactive retry${r.revocationSkipped ? ` (${r.revocationSkipped})` : ""} (need ≥ 1)`);
  }
  const ok = problems.length === 0;

  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = [
    "",
    `connect-oidc demo: ${formatDuration(r.elapsedMs)} against ${setup.description}`,
    "",
    ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`),
    "",
    ok
      ? `PASS: 0 failed heartbeats, 0 lost events, ${refreshes.proactive} proactive refreshes, ${retries.reactiveRetries} reactive retries`
      : `FAIL: ${problems.join("; ")}`,
    "",
  ];
  return { text: lines.join("\n"), ok };
}

runMain("demo", main);

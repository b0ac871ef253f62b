/**
 * The token endpoint's knobs and counters: latency, outages (a status or no answer),
 * rewritten answers and transport faults, installed as oidc-provider (koa) middleware in
 * front of its token endpoint. Every request is counted by grant type and error.
 */
import type http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type Provider from "oidc-provider";
import type {
  TestIdentityProviderStats,
  TestLatencyOptions,
  TestOutageAnswer,
  TestTokenOutage,
  TestTransportFault,
} from "./identity-provider-types.js";

export interface TokenEndpointKnobs {
  readonly stats: TestIdentityProviderStats;
  resetStats(): void;
  setLatency(ms: number, options?: TestLatencyOptions): void;
  setOutage(outage?: TestTokenOutage, answer?: TestOutageAnswer): void;
  rewrite(rewrite?: (body: Record<string, unknown>) => Record<string, unknown>): void;
  setTransportFault(fault?: TestTransportFault): void;
}

type KoaContext = Parameters<Parameters<Provider["use"]>[0]>[0];

function emptyStats(): TestIdentityProviderStats {
  return {
    tokenRequests: 0,
    byGrantType: { refresh_token: 0, client_credentials: 0, authorization_code: 0, device_code: 0, token_exchange: 0 },
    invalidGrant: 0,
    outages: 0,
    errors: {},
  };
}

function grantTypeLabel(grantType: unknown): string {
  if (typeof grantType !== "string" || grantType === "") return "(none)";
  if (grantType === "urn:ietf:params:oauth:grant-type:token-exchange") return "token_exchange";
  return grantType === "urn:ietf:params:oauth:grant-type:device_code" ? "device_code" : grantType;
}

async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

/** Waits `ms` (forever when undefined) or until `until` aborts; false when the client went away first. */
async function waitUnlessGone(res: http.ServerResponse, ms: number | undefined, until?: AbortSignal): Promise<boolean> {
  if (ms !== undefined && ms <= 0) return true;
  const gone = new AbortController();
  const onClose = () => {
    if (!res.writableEnded) gone.abort();
  };
  res.once("close", onClose);
  const signal = until ? AbortSignal.any([gone.signal, until]) : gone.signal;
  try {
    await sleep(ms ?? 2 ** 31 - 1, undefined, { signal });
    return true;
  } catch {
    return !gone.signal.aborted;
  } finally {
    res.off("close", onClose);
  }
}

function oauthErrorOf(status: number): string {
  if (status === 429) return "slow_down";
  return status >= 500 ? "temporarily_unavailable" : "invalid_request";
}

function answerOutage(ctx: KoaContext, status: number, answer: TestOutageAnswer | undefined): string {
  const error = oauthErrorOf(status);
  ctx.status = status;
  ctx.set("cache-control", "no-store");
  if (answer !== undefined) {
    for (const [name, value] of Object.entries(answer.headers ?? {})) ctx.set(name, value);
    const body = answer.body ?? "";
    ctx.body = body;
    if (body === "") ctx.remove("content-type");
    return error;
  }
  if (status === 429 || status === 503) ctx.set("retry-after", "1");
  ctx.body = { error, error_description: `test outage (HTTP ${status})` };
  return error;
}

/** Sends half of a processed answer: a body cut short, or a socket reset mid-body. */
function sendFaulty(ctx: KoaContext, fault: TestTransportFault): void {
  const text = JSON.stringify(ctx.body);
  const half = text.slice(0, Math.floor(text.length / 2));
  if (fault === "malformed-json") {
    ctx.type = "application/json";
    ctx.body = half;
    return;
  }
  ctx.respond = false;
  ctx.res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
  ctx.res.write(half, () => ctx.res.destroy());
}

function isJsonObject(body: unknown): body is Record<string, unknown> {
  return typeof body === "object" && body !== null && !Buffer.isBuffer(body);
}

export function installTokenEndpointKnobs(provider: Provider): TokenEndpointKnobs {
  let stats = emptyStats();
  let latency = { ms: 0, phase: "before" as "before" | "after" };
  let outage:
    | { readonly kind: TestTokenOutage; readonly answer: TestOutageAnswer | undefined; readonly ended: AbortController }
    | undefined;
  let rewriteBody: ((body: Record<string, unknown>) => Record<string, unknown>) | undefined;
  let transportFault: TestTransportFault | undefined;

  const countError = (error: unknown) => {
    if (typeof error !== "string") return;
    stats.errors[error] = (stats.errors[error] ?? 0) + 1;
    if (error === "invalid_grant") stats.invalidGrant++;
  };
  const countGrantType = (grantType: unknown) => {
    const label = grantTypeLabel(grantType);
    stats.byGrantType[label] = (stats.byGrantType[label] ?? 0) + 1;
  };

  /** true: the request was answered (or dropped) here. */
  const duringOutage = async (ctx: KoaContext): Promise<boolean> => {
    const current = outage;
    if (current === undefined) return false;
    if (current.kind === "no-answer") {
      // Held until the outage changes (then answered as it says) or the client gives up.
      if (await waitUnlessGone(ctx.res, undefined, current.ended.signal)) return duringOutage(ctx);
      stats.outages++;
      ctx.respond = false;
      ctx.res.destroy();
      return true;
    }
    countGrantType((await readForm(ctx.req)).get("grant_type"));
    stats.outages++;
    countError(answerOutage(ctx, current.kind, current.answer));
    return true;
  };

  const tokenPath = new URL(provider.urlFor("token")).pathname;
  provider.use(async (ctx, next) => {
    if (ctx.path !== tokenPath || ctx.method !== "POST") return next();
    stats.tokenRequests++;
    if (latency.phase === "before" && !(await waitUnlessGone(ctx.res, latency.ms))) {
      ctx.respond = false;
      ctx.res.destroy();
      return;
    }
    if (await duringOutage(ctx)) return;

    await next();
    const params = ctx.oidc?.params as Record<string, unknown> | undefined;
    const body = ctx.oidc?.body as Record<string, unknown> | undefined;
    countGrantType(params?.grant_type ?? body?.grant_type);
    if (isJsonObject(ctx.body)) countError(ctx.body.error);
    if (rewriteBody && ctx.status === 200 && isJsonObject(ctx.body)) ctx.body = rewriteBody({ ...ctx.body });
    if (transportFault !== undefined && ctx.status === 200) return sendFaulty(ctx, transportFault);
    if (latency.phase === "after") await waitUnlessGone(ctx.res, latency.ms);
  });

  return {
    get stats() {
      return stats;
    },
    resetStats() {
      stats = emptyStats();
    },
    setLatency(ms, options) {
      latency = { ms, phase: options?.phase ?? "before" };
    },
    setOutage(kind, answer) {
      outage?.ended.abort();
      outage = kind === undefined ? undefined : { kind, answer, ended: new AbortController() };
    },
    rewrite(rewrite) {
      rewriteBody = rewrite;
    },
    setTransportFault(fault) {
      transportFault = fault;
    },
  };
}

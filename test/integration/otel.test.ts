/**
 * connect-oidc/otel with the real OpenTelemetry SDK (sdk-metrics read through a
 * MetricReader, sdk-trace-base into an InMemorySpanExporter), over the real test identity
 * provider and a real Connect server: a proactive refresh, a revocation (the server refuses
 * → a reactive refresh and a re-sent call), an outage (the provider answers 503 → backoff,
 * then recovery), a dead login (invalid_grant → re-login required) and a DPoP nonce retry.
 * Each asserts what a dashboard shows, and that no attribute or status holds token material.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Attributes } from "@opentelemetry/api";
import { type DataPoint, type Histogram, MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import {
  createAuthInterceptor,
  createTokenManager,
  memoryStore,
  type TokenEvent,
  type TokenManager,
  type TokenManagerOptions,
} from "../../src/index.js";
import { createTokenTelemetry, type TokenTelemetry } from "../../src/otel.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock, type ManualClock } from "../support/manual-clock.js";
import { startServer, type TestServer } from "../support/server.js";

const MIN = 60_000;

/** A reader the test collects from when it wants (the SDK's own collection path, no timer). */
class OnDemandReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

interface Point {
  readonly name: string;
  readonly unit: string;
  readonly attributes: Attributes;
  readonly value: number | Histogram;
}

/** Every data point the SDK holds now, as an exporter would send it. */
async function collect(reader: MetricReader): Promise<Point[]> {
  const { resourceMetrics, errors } = await reader.collect();
  assert.deepEqual(errors, [], "no collection errors");
  return resourceMetrics.scopeMetrics.flatMap((scope) =>
    scope.metrics.flatMap((metric) =>
      (metric.dataPoints as DataPoint<number | Histogram>[]).map((point) => ({
        name: metric.descriptor.name,
        unit: metric.descriptor.unit,
        attributes: point.attributes,
        value: point.value,
      })),
    ),
  );
}

/** The value of the one point of `name` whose attributes include `match` (undefined: none). */
function pointValue(points: Point[], name: string, match: Attributes = {}): number | Histogram | undefined {
  const found = points.filter((p) => p.name === name && Object.entries(match).every(([k, v]) => p.attributes[k] === v));
  assert.ok(found.length <= 1, `one point of ${name} for ${JSON.stringify(match)}, not ${found.length}`);
  return found[0]?.value;
}

/** The login state a dashboard shows: the `connect_oidc.login.state` value that is 1. */
function loginState(points: Point[]): string | undefined {
  const current = points.filter((p) => p.name === "connect_oidc.login.state" && p.value === 1);
  assert.ok(current.length <= 1, "at most one current state");
  return current[0]?.attributes["connect_oidc.login.state"] as string | undefined;
}

/** Bounded wait for an event; fails with `what` when the bound runs out. */
async function eventually(seen: TokenEvent[], test: (e: TokenEvent) => boolean, what: string, ms = 10_000): Promise<TokenEvent> {
  const deadline = performance.now() + ms;
  for (;;) {
    const found = seen.find(test);
    if (found !== undefined) return found;
    if (performance.now() > deadline) throw new Error(`no ${what} within ${ms} ms; events: ${seen.map((e) => e.type).join(", ")}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("connect-oidc/otel: metrics and spans over real refreshes", () => {
  let idp: Idp;
  let server: TestServer;
  const leaks = createLeakScanner();
  const closers: (() => unknown)[] = [];
  const allSpans: ReadableSpan[] = [];
  const allPoints: Point[] = [];

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 3600 });
    server = await startServer({ idp, http2: false });
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    assert.ok(leaks.count > 0, "the suite saw tokens to look for");
    for (const span of allSpans)
      leaks.assertClean({ name: span.name, attributes: span.attributes, status: span.status }, `span ${span.name}`);
    for (const point of allPoints) leaks.assertClean(point, `metric ${point.name}`);
    await server.close();
    await idp.close();
  });

  /** A logged-in manager on a manual clock, reporting through its own SDK providers, and a client through the interceptor. */
  async function setup(extra: Partial<TokenManagerOptions> = {}, realClock = false, on: TestServer = server) {
    const reader = new OnDemandReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const clock: ManualClock = createManualClock();
    const telemetry: TokenTelemetry = createTokenTelemetry({ meterProvider, tracerProvider, ...(realClock ? {} : { clock }) });
    const seen: TokenEvent[] = [];
    const store = memoryStore();
    const tokens: TokenManager = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      ...(realClock ? {} : { clock }),
      store,
      random: () => 0.5,
      onEvent: (event) => {
        seen.push(event);
        telemetry.onEvent(event);
      },
      ...extra,
    });
    closers.push(
      () => tokens.close(),
      () => telemetry.close(),
      () => meterProvider.shutdown(),
      () => tracerProvider.shutdown(),
    );
    const login = await idp.login(extra.dpop === undefined ? {} : { dpop: true });
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    const transport = createConnectTransport({
      baseUrl: on.baseUrl,
      httpVersion: "1.1",
      interceptors: [createAuthInterceptor(tokens, { onEvent: telemetry.onEvent })],
    });
    const client = createClient(EchoService, transport);
    const read = async () => {
      const stored = await store.load();
      leaks.remember(stored?.accessToken, stored?.refreshToken);
      const points = await collect(reader);
      allPoints.push(...points);
      const spans = exporter.getFinishedSpans();
      allSpans.push(...spans);
      return { points, spans };
    };
    return { tokens, clock, seen, login, client, read, telemetry };
  }

  it("a proactive refresh: one request counted and timed, a span, the new token's time to expiry, state ready", async () => {
    const { clock, seen, client, read } = await setup();
    await client.say({ text: "before" });
    const before = await read();
    assert.equal(pointValue(before.points, "connect_oidc.token.requests"), undefined, "no refresh yet");
    assert.equal(before.spans.length, 0);

    await clock.advance(46 * MIN); // inside the 15-minute window of a 1-hour token
    const refreshed = await eventually(seen, (e) => e.type === "refreshed", "proactive refresh");
    const { points, spans } = await read();
    const match = {
      "connect_oidc.token.grant": "refresh_token",
      "connect_oidc.token.reason": "proactive",
      "connect_oidc.token.outcome": "refreshed",
    };
    assert.equal(pointValue(points, "connect_oidc.token.requests", match), 1);
    const duration = pointValue(points, "connect_oidc.token.request.duration", match) as Histogram;
    assert.equal(duration.count, 1);
    // On the manager's (here manual) monotonic clock: the refresh's own measure, in seconds.
    assert.ok(refreshed.type === "refreshed" && refreshed.refresh !== undefined);
    assert.equal(duration.sum, refreshed.refresh.durationMs / 1000);
    assert.equal(points.find((p) => p.name === "connect_oidc.token.request.duration")?.unit, "s");
    const ttl = pointValue(points, "connect_oidc.access_token.time_to_expiry") as number;
    assert.ok(ttl > 3590 && ttl <= 3600, `the new token's remaining lifetime in seconds: ${ttl}`);
    assert.equal(loginState(points), "ready");
    assert.equal(pointValue(points, "connect_oidc.login.state", { "connect_oidc.login.state": "reauth_required" }), 0);

    assert.equal(spans.length, 1);
    const [span] = spans;
    assert.equal(span!.name, "connect_oidc.token.request");
    assert.deepEqual(span!.attributes, match);
    assert.equal(span!.status.code, 1 /* OK */);
    const spanMs = span!.duration[0] * 1000 + span!.duration[1] / 1e6;
    assert.ok(Math.abs(spanMs - refreshed.refresh.durationMs) < 1, `the span lasts the refresh: ${spanMs} ms`);
    await client.say({ text: "after" });
  });

  it("a revocation: the server refuses, the call is re-sent with a reactive refresh's token; both counted", async () => {
    // The system clock: the duration is the real one of a token request on loopback.
    const { tokens, seen, client, read, login } = await setup({}, true);
    await client.say({ text: "accepted" });
    server.revoke(login.access_token);
    const res = await client.say({ text: "after revocation" });
    assert.equal(res.subject, idp.accountId, "the call went through on the retry");
    await eventually(seen, (e) => e.type === "refreshed", "reactive refresh");
    const { points, spans } = await read();
    const match = { "connect_oidc.token.reason": "rejected", "connect_oidc.token.outcome": "refreshed" };
    assert.equal(pointValue(points, "connect_oidc.token.requests", match), 1);
    assert.equal(pointValue(points, "connect_oidc.call.retries", { "connect_oidc.retry.cause": "token_refused" }), 1);
    assert.equal(pointValue(points, "connect_oidc.call.retries", { "connect_oidc.retry.cause": "dpop_nonce" }), undefined);
    assert.equal(spans.length, 1);
    assert.equal(spans[0]!.attributes["connect_oidc.token.reason"], "rejected");
    const duration = pointValue(points, "connect_oidc.token.request.duration", match) as Histogram;
    assert.ok(duration.count === 1 && duration.sum! > 0 && duration.sum! < 10, `a real duration in seconds: ${duration.sum}`);
    assert.equal(loginState(points), "ready");
    assert.notEqual(await tokens.getAccessToken(), login.access_token);
  });

  it("an outage: the failure counted with its error code, state backing_off while the old token still has time; then ready again", async () => {
    const { clock, seen, client, read } = await setup();
    await client.say({ text: "before the outage" });
    idp.setTokenOutage(503);
    try {
      await clock.advance(46 * MIN);
      await eventually(seen, (e) => e.type === "refresh-failed", "failed refresh");
      const during = await read();
      const failed = {
        "connect_oidc.token.reason": "proactive",
        "connect_oidc.token.outcome": "failed",
        "error.type": "ERR_TOKEN_REFRESH",
      };
      assert.equal(pointValue(during.points, "connect_oidc.token.requests", failed), 1);
      assert.equal(loginState(during.points), "backing_off");
      const ttl = pointValue(during.points, "connect_oidc.access_token.time_to_expiry") as number;
      assert.ok(ttl > 13 * 60 && ttl < 14 * 60 + 1, `the old token has about 14 minutes left: ${ttl} s`);
      const span = during.spans.at(-1)!;
      assert.equal(span.status.code, 2 /* ERROR */);
      assert.equal(span.attributes["error.type"], "ERR_TOKEN_REFRESH");
      assert.match(span.status.message ?? "", /Could not refresh the access token/);
    } finally {
      idp.setTokenOutage(undefined);
    }
    await clock.advance(2 * MIN); // past the backoff
    await eventually(seen, (e) => e.type === "refreshed", "refresh after the outage");
    const { points } = await read();
    assert.equal(loginState(points), "ready");
    assert.equal(pointValue(points, "connect_oidc.token.requests", { "connect_oidc.token.outcome": "refreshed" }), 1);
    await client.say({ text: "after the outage" });
  });

  it("a dead login: invalid_grant counted as reauth_required, state reauth_required, no time to expiry reported", async () => {
    const { clock, seen, read, login } = await setup();
    await idp.revokeGrant(login.refresh_token);
    await clock.advance(46 * MIN);
    await eventually(seen, (e) => e.type === "reauth-required", "re-login required");
    const { points, spans } = await read();
    const dead = { "connect_oidc.token.outcome": "reauth_required", "error.type": "ERR_REAUTH_REQUIRED" };
    assert.equal(pointValue(points, "connect_oidc.token.requests", dead), 1);
    assert.equal(loginState(points), "reauth_required");
    assert.equal(pointValue(points, "connect_oidc.login.state", { "connect_oidc.login.state": "ready" }), 0);
    assert.equal(pointValue(points, "connect_oidc.access_token.time_to_expiry"), undefined, "no token in use to count down");
    assert.equal(spans.length, 1);
    assert.equal(spans[0]!.status.code, 2 /* ERROR */);
    assert.equal(spans[0]!.attributes["connect_oidc.token.outcome"], "reauth_required");
  });

  it("a DPoP nonce challenge: the re-sent call counted as a dpop_nonce retry, no token request", async () => {
    const dpopServer = await startServer({ idp, http2: false, dpop: { requireNonce: true } });
    try {
      const { client, read } = await setup({ dpop: true }, false, dpopServer);
      const res = await client.say({ text: "with a nonce" });
      assert.equal(res.subject, idp.accountId);
      const { points, spans } = await read();
      assert.equal(pointValue(points, "connect_oidc.call.retries", { "connect_oidc.retry.cause": "dpop_nonce" }), 1);
      assert.equal(pointValue(points, "connect_oidc.call.retries", { "connect_oidc.retry.cause": "token_refused" }), undefined);
      assert.equal(pointValue(points, "connect_oidc.token.requests"), undefined, "a nonce needs no new token");
      assert.equal(spans.length, 0);
    } finally {
      await dpopServer.close();
    }
  });

  it("close(): the login state and time to expiry are no longer observed, later events are ignored", async () => {
    const { client, read, telemetry, login, seen } = await setup({}, true);
    await client.say({ text: "accepted" });
    server.revoke(login.access_token);
    await client.say({ text: "re-sent" });
    await eventually(seen, (e) => e.type === "refreshed", "reactive refresh");
    const open = await read();
    assert.equal(loginState(open.points), "ready");
    assert.ok((pointValue(open.points, "connect_oidc.access_token.time_to_expiry") as number) > 3590);
    telemetry.close();
    telemetry.onEvent({ type: "retried", cause: "token-refused" });
    await new Promise((resolve) => setTimeout(resolve, 20)); // a live observation would now be 20 ms less
    const closed = await read();
    // No longer observed: the SDK (cumulative) repeats the last values; the API has no way to end a series.
    assert.equal(
      pointValue(closed.points, "connect_oidc.access_token.time_to_expiry"),
      pointValue(open.points, "connect_oidc.access_token.time_to_expiry"),
    );
    assert.equal(pointValue(closed.points, "connect_oidc.call.retries", { "connect_oidc.retry.cause": "token_refused" }), 1);
  });
});

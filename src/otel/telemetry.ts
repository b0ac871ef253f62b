/**
 * createTokenTelemetry: turns the token manager's and the interceptor's events into
 * OpenTelemetry metrics and spans. It keeps what the observable instruments report (the
 * login's state, its access token's expiry) from the events it was told, and nothing of a
 * token: events carry none, and only their reason, grant, outcome and error code become
 * attributes.
 */
import {
  type Attributes,
  type BatchObservableCallback,
  type MeterProvider,
  metrics,
  SpanKind,
  SpanStatusCode,
  type TracerProvider,
  trace,
} from "@opentelemetry/api";
import type { AuthInterceptorEvent } from "../interceptor.js";
import type { Clock, RefreshAttempt, TokenEvent } from "../types.js";
import {
  ATTRIBUTE,
  errorAttributes,
  LOGIN_STATES,
  type LoginStateName,
  loginStateAfter,
  METRIC,
  outcomeOf,
  retryCauseOf,
  SPAN,
} from "./names.js";

/**
 * Options of {@link createTokenTelemetry}.
 *
 * @example
 * ```ts
 * import { metrics, trace } from "@opentelemetry/api";
 * import { createTokenTelemetry } from "connect-oidc/otel";
 *
 * const telemetry = createTokenTelemetry({
 *   meterProvider: metrics.getMeterProvider(),
 *   tracerProvider: trace.getTracerProvider(),
 *   attributes: { "connect_oidc.login.name": "billing" }, // tells two managers apart
 * });
 * ```
 */
export interface TokenTelemetryOptions {
  /** Default: the global one (`metrics.getMeterProvider()` of `@opentelemetry/api`). */
  readonly meterProvider?: MeterProvider;
  /** Default: the global one (`trace.getTracerProvider()`). */
  readonly tracerProvider?: TracerProvider;
  /**
   * Added to every measurement and span: to tell apart several managers that report through
   * one provider. Never put a token, a code or a secret here.
   */
  readonly attributes?: Attributes;
  /** The manager's clock (its wall clock dates the access token's expiry and the spans). Default: the system clock. */
  readonly clock?: Pick<Clock, "now">;
}

/**
 * What {@link createTokenTelemetry} returns: an `onEvent` for the token manager and the
 * interceptor, and `close` to stop reporting.
 *
 * @example
 * ```ts
 * import { createAuthInterceptor, createTokenManager } from "connect-oidc";
 * import { createTokenTelemetry } from "connect-oidc/otel";
 *
 * using telemetry = createTokenTelemetry();
 * const tokens = createTokenManager({ issuer, clientId, onEvent: telemetry.onEvent });
 * const interceptor = createAuthInterceptor(tokens, { onEvent: telemetry.onEvent });
 * ```
 */
export interface TokenTelemetry extends Disposable {
  /** Records one event of a token manager (`onEvent` option) or an interceptor (its `onEvent`). Never throws. */
  readonly onEvent: (event: TokenEvent | AuthInterceptorEvent) => void;
  /**
   * Stops observing (the login's state, the time to expiry) and ignores later events. An SDK
   * with cumulative temporality goes on exporting the last observed values: the API cannot end a series.
   */
  close(): void;
}

const SCOPE = "connect-oidc";

// Token requests take milliseconds on a good day and up to the 10 s timeout (and a lock wait) on a bad one.
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30];

/**
 * Metrics and traces of a token manager through `@opentelemetry/api` (an optional peer
 * dependency: install it to use `connect-oidc/otel`; no other entry point loads it). Pass
 * `onEvent` to `createTokenManager` and to `createAuthInterceptor`; one telemetry per
 * manager. What it records (names, attributes, units): docs/API.md, "Telemetry".
 *
 * @example
 * ```ts
 * import { createAuthInterceptor, createTokenManager, type TokenEvent } from "connect-oidc";
 * import { createTokenTelemetry } from "connect-oidc/otel";
 *
 * const telemetry = createTokenTelemetry(); // the global meter and tracer providers
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "my-cli",
 *   onEvent: (event: TokenEvent) => {
 *     telemetry.onEvent(event);
 *     if (event.type === "reauth-required") console.error("Logged out: run `my-cli login`.");
 *   },
 * });
 * const interceptor = createAuthInterceptor(tokens, { onEvent: telemetry.onEvent });
 * // … at shutdown:
 * telemetry.close();
 * ```
 */
export function createTokenTelemetry(options: TokenTelemetryOptions = {}): TokenTelemetry {
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(SCOPE);
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(SCOPE);
  const base = options.attributes ?? {};
  const now = () => (options.clock ?? Date).now();

  const requests = meter.createCounter(METRIC.requests, {
    description:
      "Token refreshes (token requests to the identity provider, or a login adopted from the store), by grant, reason and outcome",
    unit: "{request}",
  });
  const duration = meter.createHistogram(METRIC.duration, {
    description: "How long a token refresh took, the store's lock and the identity provider's answer included",
    unit: "s",
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const retries = meter.createCounter(METRIC.retries, {
    description: "Calls re-sent after the server refused them with Unauthenticated, by cause",
    unit: "{retry}",
  });
  const timeToExpiry = meter.createObservableGauge(METRIC.timeToExpiry, {
    description: "Seconds until the access token in use expires (negative: expired that long ago)",
    unit: "s",
  });
  const loginState = meter.createObservableUpDownCounter(METRIC.loginState, {
    description: "The login's state: 1 for the current one, 0 for the others",
    unit: "1",
  });

  let state: LoginStateName | undefined;
  let expiresAt: number | undefined;
  let closed = false;

  const observe: BatchObservableCallback = (result) => {
    if (state === undefined) return;
    for (const name of LOGIN_STATES) result.observe(loginState, name === state ? 1 : 0, { ...base, [ATTRIBUTE.loginState]: name });
    if (expiresAt !== undefined && (state === "ready" || state === "backing_off")) {
      result.observe(timeToExpiry, (expiresAt - now()) / 1000, base);
    }
  };
  meter.addBatchObservableCallback(observe, [timeToExpiry, loginState]);

  const recordRefresh = (event: TokenEvent, refresh: RefreshAttempt) => {
    const failure = "error" in event ? event.error : undefined;
    const attributes: Attributes = {
      ...base,
      [ATTRIBUTE.grant]: refresh.grant,
      [ATTRIBUTE.reason]: refresh.reason,
      [ATTRIBUTE.outcome]: outcomeOf(event),
      ...(failure !== undefined ? errorAttributes(failure) : {}),
    };
    requests.add(1, attributes);
    duration.record(refresh.durationMs / 1000, attributes);
    const end = now();
    const span = tracer.startSpan(SPAN, { kind: SpanKind.INTERNAL, startTime: end - refresh.durationMs, attributes });
    span.setStatus(failure === undefined ? { code: SpanStatusCode.OK } : { code: SpanStatusCode.ERROR, message: failure.message });
    span.end(end);
  };

  const onTokenEvent = (event: TokenEvent) => {
    if ("refresh" in event && event.refresh !== undefined) recordRefresh(event, event.refresh);
    const next = loginStateAfter(event);
    if (next !== undefined) state = next;
    if (event.type === "refreshed" || event.type === "adopted") expiresAt = event.expiresAt;
    if (event.type === "refresh-failed" && event.expiresAt !== undefined) expiresAt = event.expiresAt;
  };

  const telemetry: TokenTelemetry = {
    onEvent(event) {
      if (closed) return;
      try {
        if (event.type === "retried") retries.add(1, { ...base, [ATTRIBUTE.retryCause]: retryCauseOf(event) });
        else onTokenEvent(event);
      } catch {
        // A broken exporter or provider must not reach the token manager or the call.
      }
    },
    close() {
      if (closed) return;
      closed = true;
      meter.removeBatchObservableCallback(observe, [timeToExpiry, loginState]);
    },
    [Symbol.dispose]() {
      telemetry.close();
    },
  };
  return telemetry;
}

/**
 * The names connect-oidc/otel records under, in the style of OpenTelemetry's semantic
 * conventions (a `connect_oidc.` namespace, durations in seconds, counts with a `{unit}`
 * annotation), and how a token event maps to an attribute value. docs/API.md lists them.
 */
import { ConfigurationError } from "../errors.js";
import type { AuthInterceptorEvent } from "../interceptor.js";
import type { TokenEvent } from "../types.js";

export const METRIC = {
  requests: "connect_oidc.token.requests",
  duration: "connect_oidc.token.request.duration",
  timeToExpiry: "connect_oidc.access_token.time_to_expiry",
  retries: "connect_oidc.call.retries",
  loginState: "connect_oidc.login.state",
} as const;

export const SPAN = "connect_oidc.token.request";

export const ATTRIBUTE = {
  grant: "connect_oidc.token.grant",
  reason: "connect_oidc.token.reason",
  outcome: "connect_oidc.token.outcome",
  errorType: "error.type",
  errorReason: "connect_oidc.error.reason",
  retryCause: "connect_oidc.retry.cause",
  loginState: "connect_oidc.login.state",
} as const;

/** How a refresh ended, as `connect_oidc.token.outcome` says it. */
export type RefreshOutcomeName = "refreshed" | "adopted" | "failed" | "reauth_required" | "misconfigured";

/** The values of `connect_oidc.login.state`: each is reported, 1 for the current one, 0 for the others. */
export const LOGIN_STATES = ["ready", "backing_off", "reauth_required", "misconfigured"] as const;
export type LoginStateName = (typeof LOGIN_STATES)[number];

/** The outcome of the refresh an event ends. */
export function outcomeOf(event: TokenEvent): RefreshOutcomeName {
  switch (event.type) {
    case "refreshed":
    case "adopted":
      return event.type;
    case "refresh-failed":
      if (!event.terminal) return "failed";
      return event.error instanceof ConfigurationError ? "misconfigured" : "reauth_required";
    case "misconfigured":
      return "misconfigured";
    default:
      return "reauth_required";
  }
}

/** The login's state after `event`, or undefined when the event does not change it. */
export function loginStateAfter(event: TokenEvent): LoginStateName | undefined {
  switch (event.type) {
    case "refreshed":
    case "adopted":
      return "ready";
    case "refresh-failed":
      // Without `refresh`: refreshed tokens the store could not save; the login is in use.
      return event.refresh === undefined || event.terminal ? undefined : "backing_off";
    case "reauth-required":
      return "reauth_required";
    case "misconfigured":
      return "misconfigured";
    default:
      return undefined;
  }
}

/** `error.type` (the error's stable `code`, else its class name) and the typed `reason` some errors carry. */
export function errorAttributes(error: Error): Record<string, string> {
  const code = (error as { code?: unknown }).code;
  const reason = (error as { reason?: unknown }).reason;
  return {
    [ATTRIBUTE.errorType]: typeof code === "string" ? code : error.name,
    ...(typeof reason === "string" ? { [ATTRIBUTE.errorReason]: reason } : {}),
  };
}

/** `connect_oidc.retry.cause` of a re-sent call. */
export function retryCauseOf(event: AuthInterceptorEvent): string {
  return event.cause === "dpop-nonce" ? "dpop_nonce" : "token_refused";
}

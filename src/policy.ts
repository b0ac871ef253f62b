/**
 * The refresh policy: when a token is usable, when to refresh it, how long to
 * back off, which failures are final. Pure functions of time and input; no I/O.
 */

/** When a token was requested and when it expires, both epoch ms on the local clock. */
export interface TokenTimes {
  readonly issuedAt: number;
  readonly expiresAt: number;
}

/** Lifetime assumed when a token response has no `expires_in`. */
export const DEFAULT_LIFETIME_MS = 5 * 60_000;
/** Longest lifetime believed: a larger `expires_in` is taken as this (expiry must stay a finite date). */
export const MAX_LIFETIME_MS = 366 * 24 * 3600_000;
export const DEFAULT_REFRESH_WINDOW_MS = 15 * 60_000;
/** `login-expiring` is emitted this long before the login (refresh token) ends. */
export const DEFAULT_LOGIN_EXPIRING_MS = 24 * 3600_000;

const lifetime = (t: TokenTimes) => Math.max(0, t.expiresAt - t.issuedAt);

/**
 * `expires_in` has whole-second resolution and servers floor `iat`, so a server may
 * reject a token up to a second before issuedAt + expires_in. Stop using it a little
 * earlier (at most 1 s, at most 10 % of its lifetime); the reactive retry covers the rest.
 */
export function usableUntil(t: TokenTimes): number {
  return t.expiresAt - Math.min(1000, lifetime(t) * 0.1);
}

export function isUsable(t: TokenTimes, now: number): boolean {
  return now < usableUntil(t);
}

/** When to start a background refresh: the effective window is min(window, 25 % of the lifetime). */
export function refreshAt(t: TokenTimes, refreshWindowMs: number): number {
  return usableUntil(t) - Math.min(refreshWindowMs, lifetime(t) * 0.25);
}

/** Times of a token that was requested at `sentAt` and lives `expiresIn` seconds. */
export function tokenTimes(sentAt: number, expiresIn: number | undefined): TokenTimes {
  const ms =
    typeof expiresIn === "number" && Number.isFinite(expiresIn) && expiresIn > 0
      ? Math.min(expiresIn * 1000, MAX_LIFETIME_MS)
      : DEFAULT_LIFETIME_MS;
  return { issuedAt: sentAt, expiresAt: sentAt + ms };
}

export interface BackoffOptions {
  readonly baseMs?: number;
  readonly maxMs?: number;
}

/**
 * Delay before retry number `failures` (1 = after the first failure): exponential,
 * capped, with "equal jitter" so processes that failed together do not retry together.
 */
export function backoffDelay(failures: number, random: () => number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 1000;
  const max = options.maxMs ?? 60_000;
  const ceiling = Math.min(max, base * 2 ** Math.max(0, failures - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * Forced refreshes (a server refused a token) whose tokens no server has accepted since:
 * the pause before the next one. The first is immediate; then 1 s doubling to 60 s, so a
 * server that refuses every token costs the identity provider about one refresh a minute.
 */
export function forcedRefreshDelay(unacceptedForced: number): number {
  if (unacceptedForced <= 0) return 0;
  return Math.min(60_000, 1000 * 2 ** (unacceptedForced - 1));
}

/**
 * While callers fail for want of a token (expired, refused, none), their demand may try
 * the identity provider again this soon after the last attempt, whatever the backoff says
 * (but never before a `Retry-After`): calls succeed within about this long of the
 * provider's return, however long it was gone.
 */
export const DEMAND_RETRY_MS = 1000;

/** While re-login is required, the store is looked at (for another process's login) at most this often. */
export const REAUTH_RECHECK_MS = 1000;

/** The longest a timer sleeps before the wall clock is looked at again (it may have stepped). */
export const MAX_SLEEP_MS = 5 * 60_000;

/** The longest `Retry-After` honoured: a provider asking for longer is asked again after this. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/**
 * A `Retry-After` header (delta-seconds or an HTTP date) as ms from `wallNow`, capped at
 * MAX_RETRY_AFTER_MS; undefined when absent or unreadable.
 */
export function retryAfterMs(header: string | null | undefined, wallNow: number): number | undefined {
  if (header === null || header === undefined || header.trim() === "") return undefined;
  const text = header.trim();
  // delta-seconds, or an HTTP date (it names a weekday and a month); anything else is unreadable.
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : /[A-Za-z]{3}/.test(text) ? Date.parse(text) - wallNow : Number.NaN;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS);
}

/** OAuth error codes that refuse the client's settings, not the login: fix the configuration. */
const CONFIGURATION_ERRORS = new Set([
  "invalid_client",
  "unauthorized_client",
  "unsupported_grant_type",
  "invalid_scope",
  "invalid_target",
  // oidc-provider's answer to a grant the client is not registered for; no retry changes it.
  "invalid_request",
]);

export interface FailureFacts {
  /** HTTP status of the token endpoint's answer, if one arrived. */
  readonly status?: number;
  /** OAuth `error` code, if the answer carried one. */
  readonly error?: string;
}

/**
 * Which of three a failed token request is: `transient` (wait: it may pass), `reauth` (the
 * login is dead: log in again) or `configuration` (the provider refuses this client's
 * settings: fix them). Classified by what the answer means, not only by the codes RFC 6749
 * names, because providers bend §5.2:
 * - no answer (network, timeout), 5xx, 408 and 429: transient;
 * - `invalid_client`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`,
 *   `invalid_target`, `invalid_request`, any 401, a 404/405 (no token endpoint there): configuration;
 * - `invalid_grant`: reauth — for client credentials (no login to renew) configuration;
 * - another parsable OAuth code (`temporarily_unavailable`, ...): transient;
 * - any other 4xx without a parsable OAuth error (an empty body, an HTML page): reauth —
 *   the provider refuses the grant and says nothing a retry could change; for client
 *   credentials configuration.
 */
export function failureKind(facts: FailureFacts, grant: GrantType = "refresh_token"): FailureKind {
  const { status, error } = facts;
  if (status !== undefined && (status >= 500 || status === 408 || status === 429 || status < 400)) return "transient";
  const noLogin = grant === "client_credentials";
  if (error !== undefined && CONFIGURATION_ERRORS.has(error)) return "configuration";
  if (error === "invalid_grant") return noLogin ? "configuration" : "reauth";
  if (status === undefined) return "transient";
  if (status === 401 || status === 404 || status === 405) return "configuration";
  if (error !== undefined) return "transient";
  return noLogin ? "configuration" : "reauth";
}

export type FailureKind = "transient" | "reauth" | "configuration";

/**
 * The grants whose refusals `failureKind` reads: only client credentials have no login behind
 * them (a token exchange's `invalid_grant` is its subject's login ending).
 */
export type GrantType = "refresh_token" | "client_credentials" | "authorization_code" | "device_code" | "token_exchange";

/** Retrying the same grant can never succeed: a dead login, or settings the provider refuses. */
export function isTerminal(facts: FailureFacts): boolean {
  return failureKind(facts) !== "transient";
}

/**
 * What to do for a caller (or the background timer) in a given state: serve now, serve and
 * refresh in the background, wait for a refresh, look at the store, or fail fast. A pure
 * function of (state, times, request): no I/O, no clock reads. For a resource server's
 * token (`forResource`) the same rules run on the login as that token sees it (`viewOf`).
 */
import type { DPoPAlgorithm } from "../dpop-key.js";
import { closedError, noLogin, noRefreshToken } from "../errors.js";
import { REAUTH_RECHECK_MS, refreshAt, type TokenTimes, usableUntil } from "../policy.js";
import { forcedRefreshAllowed, type Login, type Marks, type State, usableAt, viewOf } from "./state.js";
import type { RefreshReason } from "../types.js";

export interface Now {
  /** Wall clock, epoch ms: for expiry (persisted, shared across processes). */
  readonly wall: number;
  /** Monotonic ms: for backoff, rechecks and cooldowns. */
  readonly monotonic: number;
}

export interface Settings {
  readonly grant: "refresh_token" | "client_credentials";
  /** min(this, 25 % of the lifetime) before expiry a background refresh starts; 0: only on demand. */
  readonly refreshWindowMs: number;
  readonly clientId: string;
  readonly issuer: string;
  /** How long before the login's end (refresh-token lifetime) `login-expiring` is emitted. */
  readonly loginExpiringMs: number;
  /** DPoP's signing algorithm for keys the manager makes; undefined: DPoP off. */
  readonly dpop?: DPoPAlgorithm;
}

export type Decision =
  /** Hand out this token now. */
  | { readonly do: "serve"; readonly token: string }
  /** Hand out this token now, and start a background refresh. */
  | { readonly do: "serve-and-refresh"; readonly token: string; readonly reason: RefreshReason }
  /** Start a refresh (or join the one in flight), wait for it, then decide again. */
  | { readonly do: "refresh"; readonly reason: RefreshReason }
  /** Wait for the refresh in flight, then decide again. */
  | { readonly do: "wait" }
  /** Read the store (at startup, or for another process's login), then decide again. */
  | { readonly do: "load" }
  | { readonly do: "recheck" }
  /** Fail now; `reauth`: enter the re-login state with this error first. */
  | { readonly do: "fail"; readonly error: Error; readonly reauth?: boolean }
  /** Background: nothing to do now. */
  | { readonly do: "idle" };

const IDLE: Decision = { do: "idle" };
const WAIT: Decision = { do: "wait" };

/**
 * For a caller (`background: false`) or the timer (`background: true`). The timer never
 * waits, loads or fails; it only starts refreshes that are due. `resource`: for that
 * resource server's token (undefined: the main token).
 */
export function decide(state: State, now: Now, background: boolean, settings: Settings, resource?: string): Decision {
  switch (state.kind) {
    case "closed":
      return background ? IDLE : { do: "fail", error: closedError() };
    case "loading":
      return background ? IDLE : { do: "load" };
    case "empty":
      if (background) return IDLE;
      return settings.grant === "client_credentials"
        ? { do: "refresh", reason: "startup" }
        : { do: "fail", error: noLogin(settings), reauth: true };
    case "misconfigured":
      return background ? IDLE : { do: "fail", error: state.error };
    case "reauth-required":
      if (background) return IDLE;
      return now.monotonic - state.checkedAt >= REAUTH_RECHECK_MS ? { do: "recheck" } : { do: "fail", error: state.error };
    case "refreshing": {
      if (background) return IDLE;
      const login = state.login === undefined ? undefined : viewOf(state.login, resource);
      return login !== undefined && !login.refused && usableAt(login.tokens, now.wall) ? serve(login) : WAIT;
    }
    case "ready":
      return decideWithLogin(viewOf(state.login, resource), now, background, settings, undefined);
    case "backing-off":
      return decideWithLogin(state.login === undefined ? undefined : viewOf(state.login, resource), now, background, settings, state);
  }
}

function decideWithLogin(
  login: Login | undefined,
  now: Now,
  background: boolean,
  settings: Settings,
  backoff: { readonly retryAt: number; readonly demandRetryAt: number; readonly error: Error } | undefined,
): Decision {
  // refreshWindowMs 0: refreshes happen on a caller's demand only, retries included.
  if (background && settings.refreshWindowMs === 0) return IDLE;
  // A resource the identity provider refused: its callers fail fast, nobody asks again.
  const refusedByProvider = (login as Marks | undefined)?.refusedByProvider;
  if (refusedByProvider !== undefined) return background ? IDLE : { do: "fail", error: refusedByProvider };
  const tokens = login?.tokens;
  const canRefresh = settings.grant === "client_credentials" || tokens?.refreshToken !== undefined;
  const usable = usableAt(tokens, now.wall);
  // The background schedule: the backoff's next attempt, else the refresh window (an expired
  // token is overdue), unless refreshes happen on demand only (refreshWindowMs: 0).
  const due =
    backoff !== undefined
      ? now.monotonic >= backoff.retryAt
      : settings.refreshWindowMs > 0 && (!usable || now.wall >= refreshAt(tokens as TokenTimes, settings.refreshWindowMs));

  if (usable && !login!.refused) {
    if (!due || !canRefresh) return background ? IDLE : serve(login!);
    if (background) return { do: "refresh", reason: "proactive" };
    // While backing off, callers with a valid token leave the retry to the timer.
    return backoff !== undefined ? serve(login!) : { do: "serve-and-refresh", token: tokens!.accessToken!, reason: "proactive" };
  }

  // No usable token: expired, refused by a server, or none yet.
  if (!canRefresh) {
    if (background) return IDLE;
    return { do: "fail", error: tokens === undefined ? noLogin(settings) : noRefreshToken(settings), reauth: true };
  }
  const reason: RefreshReason =
    login === undefined ? "startup" : login.refused && usable ? "rejected" : login.loadedAtStart ? "startup" : "expired";
  if (reason === "rejected") {
    // Refused while the clock says valid. A server that refuses every token gets it anyway
    // (and says so) until the pause between forced refreshes is over.
    if (background) return IDLE;
    if (!forcedRefreshAllowed(login!, now.monotonic)) return serve(login!);
  }
  if (background) return due ? { do: "refresh", reason } : IDLE;
  // Callers failing for want of a token may try sooner than the backoff, about once a second.
  if (backoff !== undefined && !due && now.monotonic < backoff.demandRetryAt) return { do: "fail", error: backoff.error };
  return { do: "refresh", reason };
}

/**
 * decide()'s answer for a caller in `state`, as long as the wall clock is before `until`:
 * serve `token`. Undefined when the state gives no such answer (not ready, refused, no
 * usable token). Lets the hot path skip the decision while nothing can have changed but time.
 */
export function serveUntil(state: State, settings: Settings): { readonly until: number; readonly token: string } | undefined {
  if (state.kind !== "ready" || state.login.refused) return undefined;
  const tokens = state.login.tokens;
  if (tokens.accessToken === undefined || tokens.issuedAt === undefined || tokens.expiresAt === undefined) return undefined;
  const canRefresh = settings.grant === "client_credentials" || tokens.refreshToken !== undefined;
  const times = tokens as TokenTimes;
  const until = canRefresh && settings.refreshWindowMs > 0 ? refreshAt(times, settings.refreshWindowMs) : usableUntil(times);
  return { until: Math.min(until, usableUntil(times)), token: tokens.accessToken };
}

function serve(login: Login): Decision {
  return { do: "serve", token: login.tokens.accessToken! };
}

type Wake = { readonly wall?: number; readonly monotonic?: number } | undefined;

/**
 * When the background timer should look again (wall-clock epoch ms or monotonic ms), or
 * undefined for no timer: the earliest for the main token and `resources`' (the ones this
 * process hands out). The caller clamps the sleep (the wall clock may step meanwhile).
 */
export function wakeAt(state: State, settings: Settings, resources: readonly string[] = []): Wake {
  let earliest = wakeFor(state, settings, undefined);
  for (const resource of resources) {
    const wake = wakeFor(state, settings, resource);
    if (wake === undefined) continue;
    const wall = Math.min(earliest?.wall ?? Number.POSITIVE_INFINITY, wake.wall ?? Number.POSITIVE_INFINITY);
    const monotonic = Math.min(earliest?.monotonic ?? Number.POSITIVE_INFINITY, wake.monotonic ?? Number.POSITIVE_INFINITY);
    earliest = {
      ...(Number.isFinite(wall) ? { wall } : {}),
      ...(Number.isFinite(monotonic) ? { monotonic } : {}),
    };
  }
  return earliest;
}

function wakeFor(state: State, settings: Settings, resource: string | undefined): Wake {
  if (state.kind !== "ready" && state.kind !== "backing-off") return undefined;
  const login = state.login === undefined ? undefined : viewOf(state.login, resource);
  // Refused tokens are replaced on demand (a caller's), never by the timer.
  if (login?.refused) return undefined;
  if (settings.grant === "refresh_token" && login?.tokens.refreshToken === undefined) return undefined;
  if (settings.refreshWindowMs === 0) return undefined;
  if (state.kind === "backing-off") return { monotonic: state.retryAt };
  const tokens = login!.tokens;
  if (tokens.issuedAt === undefined || tokens.expiresAt === undefined || tokens.accessToken === undefined) return { wall: 0 };
  return { wall: refreshAt(tokens as TokenTimes, settings.refreshWindowMs) };
}

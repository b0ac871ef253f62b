/**
 * The token manager's states and the one function that moves between them. Pure: no I/O,
 * no clock reads (times come in with the inputs), no events (the runner emits them on
 * entry to a state, from `entryEvents`). What a caller or the timer does in each state is
 * decision.ts; machine.ts feeds the inputs.
 *
 * States (`State["kind"]`) and the inputs (`Input["type"]`) that move between them:
 *
 *   loading ─────────── loaded ──────────▶ ready | empty
 *   ready | backing-off | empty ─ refresh-started ─▶ refreshing      (empty: client credentials)
 *   refreshing ──────── refresh-done ────▶ ready
 *              ──────── refresh-failed ──▶ backing-off ─ refresh-started ─▶ refreshing
 *              ──────── reauth ──────────▶ reauth-required                (the provider's terminal answer)
 *              ──────── misconfigured ───▶ misconfigured                  (settings refused, never worked here)
 *                                         ▶ ready                          (a resource the provider refuses: that
 *                                                                          resource's callers fail, the rest goes on)
 *   ready | empty | backing-off ─ reauth ─▶ reauth-required               (no login, no refresh token, a login
 *                                                                          that does not fit the `dpop` option)
 *   reauth-required ─── rechecked ───────▶ ready                          (another process's login in the store)
 *   any ─────────────── replaced ────────▶ ready (setTokens) | empty (signOut)
 *   any ─────────────── closed ──────────▶ closed                         (final: no input leaves it)
 *   store-seen, refused, accepted: the same state, its login updated.
 *
 * Resource servers (RFC 8707, `forResource`): a login also holds access tokens for other
 * resources (`StoredTokens.resources`), each with its own marks (refused, accepted). A
 * refresh for a resource is a flight like any other (`Flight.resource`): one at a time,
 * whatever it is for, since each one rotates the one refresh token. `viewOf(login, resource)`
 * is the login as one resource's token sees it, so decision.ts decides for every resource
 * with the same rules.
 *
 * A result whose flight is no longer the state's (the login was replaced, the manager
 * closed, meanwhile) is dropped here and nowhere else.
 */
import type { ConfigurationError, ReauthRequiredError, TokenRefreshError } from "../errors.js";
import { forcedRefreshDelay, isUsable, type TokenTimes } from "../policy.js";
import { resourceView, sameLogin } from "../stored-tokens.js";
import type { RefreshAttempt, RefreshReason, StoredTokens, TokenEvent } from "../types.js";

/** What this process holds of a login, and what servers said of its access token. */
export interface Login {
  /** The tokens in use. */
  readonly tokens: StoredTokens;
  /**
   * The store's content as this process last read or wrote it. Anything else found there
   * was written by another process since: "newer" is decided by identity, never by clocks.
   */
  readonly inStore: StoredTokens | undefined;
  /** A server refused `tokens.accessToken`: it is replaced before it is handed out again. */
  readonly refused: boolean;
  /** A server accepted `tokens.accessToken` (a call with it succeeded). */
  readonly accepted: boolean;
  /** Forced refreshes in a row whose tokens no server accepted, and when the last one ended (monotonic ms). */
  readonly unacceptedForced: number;
  readonly lastForcedAt: number;
  /** Loaded from the store at startup and not refreshed since: its first refresh is a "startup" one. */
  readonly loadedAtStart: boolean;
  /** What servers said of each resource's access token (as `refused` … `lastForcedAt` say of the main one). */
  readonly resourceMarks: Readonly<Record<string, Marks>>;
}

/**
 * What servers said of one access token, and the forced refreshes that replaced it; for a
 * resource, the identity provider's refusal of it (`invalid_target`: its callers fail with
 * this error until a new login).
 */
export type Marks = Pick<Login, "refused" | "accepted" | "unacceptedForced" | "lastForcedAt"> & {
  readonly refusedByProvider?: ConfigurationError;
};

const NO_MARKS: Marks = { refused: false, accepted: false, unacceptedForced: 0, lastForcedAt: 0 };

/** One refresh in progress: its identity decides whether its result still applies. */
export interface Flight {
  readonly reason: RefreshReason;
  /** The resource server the refresh is for (RFC 8707); undefined: the main token. */
  readonly resource?: string;
  readonly done: Promise<void>;
  /** The grant it uses, and when it started (monotonic ms): the `refresh` field of the event that ends it. */
  readonly grant: RefreshAttempt["grant"];
  readonly startedAt: number;
}

/** The outcome of a refresh (under the store's lock): new tokens, or adopted from the store. */
export interface RefreshOutcome {
  readonly tokens: StoredTokens;
  readonly inStore: StoredTokens | undefined;
  readonly adopted: boolean;
  /** The tokens are in use but could not be saved (other processes cannot see them). */
  readonly saveError?: Error;
}

export type State =
  /** The store has not been read yet. */
  | { readonly kind: "loading" }
  /**
   * No login (none stored, or signed out). Client credentials fetch one on the first call.
   * `inStore`: what the store still holds when clearing it failed (not to be taken for a new login).
   */
  | { readonly kind: "empty"; readonly inStore?: StoredTokens }
  /** A login; its token may be fresh, due for a refresh, expired or refused (`decide` tells). */
  | {
      readonly kind: "ready";
      readonly login: Login;
      readonly outcome?: RefreshOutcome;
      readonly reason?: RefreshReason;
      /** The resource the refresh that led here was for. */
      readonly resource?: string;
    }
  /** A refresh is in flight; callers without a usable token wait for it. */
  | {
      readonly kind: "refreshing";
      readonly login: Login | undefined;
      readonly flight: Flight;
      /** Transient failures in a row before this attempt. */
      readonly failures: number;
    }
  /** The last refresh failed for a reason that may pass; the next attempt is scheduled. */
  | {
      readonly kind: "backing-off";
      readonly login: Login | undefined;
      readonly failures: number;
      /** Monotonic ms: the scheduled next attempt, and the earliest a waiting caller may try. */
      readonly retryAt: number;
      readonly demandRetryAt: number;
      readonly error: TokenRefreshError;
    }
  /** The login is gone (dead refresh token, none at all): only a new login helps. */
  | {
      readonly kind: "reauth-required";
      readonly login: Login | undefined;
      readonly inStore: StoredTokens | undefined;
      readonly error: ReauthRequiredError;
      /** The refresh failure that led here was the identity provider's terminal answer. */
      readonly terminal: boolean;
      /** Monotonic ms: when the store was last looked at for another process's login. */
      readonly checkedAt: number;
    }
  /**
   * The identity provider refused this configuration before it ever worked in this process
   * (wrong issuer, unknown client, wrong secret, a scope it may not have): only a change of
   * options (a new manager) helps, or a new login (`setTokens`) to try again. Callers fail
   * fast with `error`; the provider is not asked again.
   */
  | { readonly kind: "misconfigured"; readonly login: Login | undefined; readonly error: ConfigurationError }
  | { readonly kind: "closed" };

export type Input =
  | { readonly type: "loaded"; readonly stored: StoredTokens | undefined }
  /** setTokens (tokens) or signOut (undefined); `inStore` is what the store holds now. */
  | { readonly type: "replaced"; readonly tokens: StoredTokens | undefined }
  | { readonly type: "refresh-started"; readonly flight: Flight }
  | { readonly type: "refresh-done"; readonly flight: Flight; readonly outcome: RefreshOutcome; readonly at: number }
  | {
      readonly type: "refresh-failed";
      readonly flight: Flight;
      readonly error: TokenRefreshError;
      readonly at: number;
      /** Monotonic ms of the next scheduled attempt, and the earliest a waiting caller may try. */
      readonly retryAt: number;
      readonly demandRetryAt: number;
      /** Tokens to go on with although the refresh failed (a rotated refresh token kept). */
      readonly kept?: RefreshOutcome;
    }
  | {
      readonly type: "reauth";
      readonly flight?: Flight;
      readonly error: ReauthRequiredError;
      readonly terminal: boolean;
      readonly at: number;
    }
  /** The refresh's answer shows the configuration is wrong, and it never worked in this process. */
  | { readonly type: "misconfigured"; readonly flight: Flight; readonly error: ConfigurationError }
  /** The store was read outside a refresh (after a failed save): what it holds now. */
  | { readonly type: "store-seen"; readonly stored: StoredTokens | undefined }
  | { readonly type: "refused"; readonly token: string; readonly resource?: string }
  | { readonly type: "accepted"; readonly token: string; readonly resource?: string }
  /** While re-login is required: the store was looked at; `stored` is what it holds. */
  | { readonly type: "rechecked"; readonly stored: StoredTokens | undefined; readonly at: number; readonly wallNow: number }
  | { readonly type: "closed" };

/** A login as set by the user or loaded from the store: nothing known of its token yet. */
export function newLogin(tokens: StoredTokens, loadedAtStart: boolean): Login {
  return { tokens, inStore: tokens, ...NO_MARKS, loadedAtStart, resourceMarks: {} };
}

/** The login as the token of `resource` sees it (undefined: the main token): that token, its marks. */
export function viewOf(login: Login, resource: string | undefined): Login {
  if (resource === undefined) return login;
  return { ...login, tokens: resourceView(login.tokens, resource), ...(login.resourceMarks[resource] ?? NO_MARKS) };
}

/** The login a state carries, if any. */
export function loginOf(state: State): Login | undefined {
  return "login" in state ? state.login : undefined;
}

/** A forced refresh may start now: the refused token had been accepted, or the pause after the last one is over. */
export function forcedRefreshAllowed(login: Login, monotonicNow: number): boolean {
  return login.accepted || monotonicNow - login.lastForcedAt >= forcedRefreshDelay(login.unacceptedForced);
}

export function transition(state: State, input: Input): State {
  if (state.kind === "closed") return state;
  switch (input.type) {
    case "closed":
      return { kind: "closed" };
    case "replaced":
      return input.tokens === undefined ? { kind: "empty" } : { kind: "ready", login: newLogin(input.tokens, false) };
    case "loaded":
      if (state.kind !== "loading") return state; // a login set meanwhile wins
      return input.stored === undefined ? { kind: "empty" } : { kind: "ready", login: newLogin(input.stored, true) };
    case "refresh-started":
      if (state.kind !== "ready" && state.kind !== "backing-off" && state.kind !== "empty") return state;
      return {
        kind: "refreshing",
        login: state.kind === "empty" ? undefined : state.login,
        flight: input.flight,
        failures: state.kind === "backing-off" ? state.failures : 0,
      };
    case "refresh-done":
    case "refresh-failed":
    case "misconfigured":
      return state.kind === "refreshing" && state.flight === input.flight ? landed(state, input) : state;
    case "reauth":
      if (input.flight !== undefined && (state.kind !== "refreshing" || state.flight !== input.flight)) return state;
      return reauthRequired(state, input);
    case "store-seen":
      if (state.kind === "empty") return input.stored === undefined ? { kind: "empty" } : { kind: "empty", inStore: input.stored };
      return withLogin(state, (login) => ({ ...login, inStore: input.stored }));
    case "refused":
    case "accepted":
      return withLogin(state, (login) => reported(login, input));
    case "rechecked":
      if (state.kind !== "reauth-required") return state;
      if (!anotherLogin(state, input.stored, input.wallNow)) return { ...state, checkedAt: input.at };
      return {
        kind: "ready",
        login: newLogin(input.stored, false),
        outcome: { tokens: input.stored, inStore: input.stored, adopted: true },
      };
  }
}

/** The result of the refresh in flight (its flight checked): new tokens, a scheduled retry, or the configuration refused. */
function landed(
  state: Extract<State, { kind: "refreshing" }>,
  input: Extract<Input, { type: "refresh-done" | "refresh-failed" | "misconfigured" }>,
): State {
  switch (input.type) {
    case "refresh-done":
      return {
        kind: "ready",
        login: refreshed(state.login, input.flight, input.outcome, input.at),
        outcome: input.outcome,
        reason: input.flight.reason,
        ...(input.flight.resource !== undefined ? { resource: input.flight.resource } : {}),
      };
    case "refresh-failed":
      return {
        kind: "backing-off",
        login:
          input.kept === undefined || state.login === undefined
            ? state.login
            : { ...state.login, tokens: input.kept.tokens, inStore: input.kept.inStore },
        failures: state.failures + 1,
        retryAt: input.retryAt,
        demandRetryAt: input.demandRetryAt,
        error: input.error,
      };
    case "misconfigured": {
      const resource = input.flight.resource;
      if (resource === undefined || state.login === undefined) return { kind: "misconfigured", login: state.login, error: input.error };
      const marks = { ...pickMarks(viewOf(state.login, resource)), refusedByProvider: input.error };
      return { kind: "ready", login: { ...state.login, resourceMarks: { ...state.login.resourceMarks, [resource]: marks } } };
    }
  }
}

/** Re-login required: the login (if any) is kept for its store content, the error for every caller. */
function reauthRequired(state: State, input: Extract<Input, { type: "reauth" }>): State {
  if (state.kind === "loading" || state.kind === "reauth-required" || state.kind === "closed") return state;
  const login = loginOf(state);
  return {
    kind: "reauth-required",
    login,
    inStore: state.kind === "empty" ? state.inStore : login?.inStore,
    error: input.error,
    terminal: input.terminal,
    checkedAt: input.at,
  };
}

/**
 * The login after a refresh: new tokens, nothing known of the ones the refresh was for (nor
 * of any other token that changed: a login adopted from the store); forced refreshes counted.
 */
function refreshed(previous: Login | undefined, flight: Flight, outcome: RefreshOutcome, at: number): Login {
  const target = flight.resource;
  const marksAfter = (resource: string | undefined): Marks => {
    const before = previous === undefined ? undefined : viewOf(previous, resource);
    if (resource === target) return counted(before, flight.reason === "rejected", at);
    const unchanged = before !== undefined && before.tokens.accessToken === resourceView(outcome.tokens, resource).accessToken;
    return unchanged ? pickMarks(before) : NO_MARKS;
  };
  const resourceMarks: Record<string, Marks> = {};
  for (const resource of Object.keys(outcome.tokens.resources ?? {})) resourceMarks[resource] = marksAfter(resource);
  return { tokens: outcome.tokens, inStore: outcome.inStore, ...marksAfter(undefined), loadedAtStart: false, resourceMarks };
}

/** The marks of a token a refresh just replaced: nothing known of the new one; a forced refresh counted. */
function counted(previous: Marks | undefined, forced: boolean, at: number): Marks {
  // A forced refresh after an accepted token was refused (a revocation) starts a new count.
  const unaccepted = previous === undefined || previous.accepted ? 0 : previous.unacceptedForced;
  return {
    refused: false,
    accepted: false,
    unacceptedForced: forced ? unaccepted + 1 : unaccepted,
    lastForcedAt: forced ? at : (previous?.lastForcedAt ?? 0),
  };
}

function pickMarks(login: Marks): Marks {
  const { refused, accepted, unacceptedForced, lastForcedAt, refusedByProvider } = login;
  return { refused, accepted, unacceptedForced, lastForcedAt, ...(refusedByProvider !== undefined ? { refusedByProvider } : {}) };
}

/** A server's word on a token: only the current token's matters (the main one's, or its resource's), and only once. */
function reported(login: Login, input: Extract<Input, { type: "refused" | "accepted" }>): Login {
  const view = viewOf(login, input.resource);
  if (view.tokens.accessToken !== input.token) return login;
  let marks: Marks;
  if (input.type === "refused") {
    if (view.refused) return login;
    marks = { ...pickMarks(view), refused: true };
  } else {
    if (view.accepted && view.unacceptedForced === 0) return login;
    marks = { ...pickMarks(view), accepted: true, unacceptedForced: 0 };
  }
  if (input.resource === undefined) return { ...login, ...marks };
  return { ...login, resourceMarks: { ...login.resourceMarks, [input.resource]: marks } };
}

function withLogin(state: State, update: (login: Login) => Login): State {
  if (state.kind !== "ready" && state.kind !== "refreshing" && state.kind !== "backing-off") return state;
  if (state.login === undefined) return state;
  const login = update(state.login);
  if (login === state.login) return state;
  // A report is not a refresh: the entered state carries no outcome to announce.
  return state.kind === "ready" ? { kind: "ready", login } : { ...state, login };
}

/**
 * Another process logged in: the store holds a refresh token this process does not have,
 * or a valid access token it does not hold.
 */
function anotherLogin(
  state: Extract<State, { kind: "reauth-required" }>,
  stored: StoredTokens | undefined,
  wallNow: number,
): stored is StoredTokens {
  // What this process last saw in the store is no news, whatever it holds in memory.
  if (stored === undefined || sameLogin(stored, state.inStore)) return false;
  const held = state.login?.tokens ?? state.inStore;
  return (
    (stored.refreshToken !== undefined && stored.refreshToken !== held?.refreshToken) ||
    (stored.accessToken !== held?.accessToken && usableAt(stored, wallNow))
  );
}

/** The token is there, its times are known, and it is usable at `wallNow`. */
export function usableAt(
  tokens: StoredTokens | undefined,
  wallNow: number,
): tokens is StoredTokens & Required<Pick<StoredTokens, "accessToken" | "issuedAt" | "expiresAt">> {
  return (
    tokens?.accessToken !== undefined &&
    tokens.issuedAt !== undefined &&
    tokens.expiresAt !== undefined &&
    isUsable(tokens as TokenTimes, wallNow)
  );
}

/** The events a state announces when it is entered from `previous`. */
export function entryEvents(previous: State, next: State, wallNow: number, monotonicNow: number): TokenEvent[] {
  const events = stateEvents(previous, next, wallNow, monotonicNow);
  // The first event on leaving `refreshing` ends the refresh: it says which, and how long it took.
  if (previous.kind !== "refreshing" || next.kind === "refreshing" || events[0] === undefined) return events;
  const { reason, grant, startedAt } = previous.flight;
  events[0] = { ...events[0], refresh: { reason, grant, durationMs: Math.max(0, monotonicNow - startedAt) } } as TokenEvent;
  return events;
}

function stateEvents(previous: State, next: State, wallNow: number, monotonicNow: number): TokenEvent[] {
  if (previous === next) return [];
  switch (next.kind) {
    case "ready": {
      const outcome = next.outcome;
      if (outcome === undefined || next.outcome === (previous.kind === "ready" ? previous.outcome : undefined)) return [];
      const expiresAt = resourceView(outcome.tokens, next.resource).expiresAt ?? wallNow;
      const resource = next.resource !== undefined ? { resource: next.resource } : {};
      const events: TokenEvent[] = [
        outcome.adopted
          ? { type: "adopted", expiresAt, ...resource }
          : { type: "refreshed", reason: next.reason ?? "expired", expiresAt, ...resource },
      ];
      if (outcome.saveError !== undefined) events.push({ type: "refresh-failed", error: outcome.saveError, terminal: false });
      return events;
    }
    case "backing-off": {
      if (previous.kind !== "refreshing") return [];
      const expiresAt = next.login?.tokens.expiresAt;
      const retryAt = wallNow + (next.retryAt - monotonicNow);
      return [{ type: "refresh-failed", error: next.error, retryAt, terminal: false, ...(expiresAt !== undefined ? { expiresAt } : {}) }];
    }
    case "reauth-required":
      if (previous.kind === "reauth-required") return [];
      return [
        ...(next.terminal ? [{ type: "refresh-failed", error: next.error, terminal: true } as const] : []),
        { type: "reauth-required", error: next.error },
      ];
    case "misconfigured":
      return [
        { type: "refresh-failed", error: next.error, terminal: true },
        { type: "misconfigured", error: next.error },
      ];
    default:
      return [];
  }
}

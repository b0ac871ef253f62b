/**
 * The token manager: holds the current login, hands out valid access tokens, refreshes
 * them in the background before they expire, and shares one refresh among concurrent
 * callers (and, through the store's lock, among processes).
 *
 * It is wiring: the states and their rules are in token-state.ts, what to do for a caller
 * in token-decision.ts, the refresh under the lock in token-exchange.ts, the timing policy
 * in policy.ts. Every change of state passes through `setState`, which arms the timer and
 * emits the events of the state entered.
 */
import { abortable } from "./abortable.js";
import { clampDelay, monotonicOf, systemClock } from "./clock.js";
import { ConfigurationError, ReauthRequiredError, TokenRefreshError } from "./errors.js";
import { describeFailure, summarizeFailure } from "./failure.js";
import { memoryStore } from "./memory-store.js";
import { createOidcAdapter, type OidcAdapter } from "./oidc.js";
import { checkDuration, checkFunction, checkIssuer, checkString } from "./options.js";
import { backoffDelay, DEFAULT_REFRESH_WINDOW_MS, MAX_SLEEP_MS } from "./policy.js";
import { tokenResponseProblem } from "./stored-tokens.js";
import { closedError, type Decision, decide, noLogin, noRefreshToken, type Settings, wakeAt } from "./token-decision.js";
import { type ExchangeDeps, exchangeUnderLock, storedFromResponse } from "./token-exchange.js";
import { entryEvents, type Flight, type Input, type RefreshOutcome, type State, transition, usableAt } from "./token-state.js";
import type { Clock, RefreshReason, StoredTokens, TokenEndpointResponse, TokenEvent, TokenProvider, TokenStore } from "./types.js";

export interface TokenManagerOptions {
  /** Issuer URL; discovery through openid-client happens once. */
  readonly issuer: string | URL;
  readonly clientId: string;
  /** For confidential clients (client_secret_basic). */
  readonly clientSecret?: string;
  /** Default "refresh_token". */
  readonly grant?: "refresh_token" | "client_credentials";
  /** Sent with refresh and client_credentials requests. */
  readonly scope?: string;
  readonly resource?: string;
  /** Default memoryStore(). */
  readonly store?: TokenStore;
  /**
   * Default 15 min; the effective window is min(this, 25 % of the token's lifetime).
   * 0: no background refresh at all — a token is refreshed when a call finds it expired.
   */
  readonly refreshWindowMs?: number;
  /** Each token-endpoint request; default 10 s. */
  readonly timeoutMs?: number;
  /** Allow an http:// issuer: loopback development and tests only. */
  readonly allowInsecureRequests?: boolean;
  readonly onEvent?: (event: TokenEvent) => void;
  /** Time source, for tests that drive hours in milliseconds. Default: the system clock. */
  readonly clock?: Clock;
  /** Random source in [0, 1) for backoff jitter. Default Math.random. */
  readonly random?: () => number;
  /** Backoff after transient failures; defaults 1 s doubling to 60 s. */
  readonly backoff?: { readonly baseMs?: number; readonly maxMs?: number };
}

export interface TokenManager extends TokenProvider, Disposable {
  /** A server accepted `token`: the interceptor calls this after every successful call. */
  accepted(token: string): void;
  /** Adopt the result of a login; persisted to the store. */
  setTokens(response: TokenEndpointResponse): Promise<void>;
  /** Forget the login and clear the store. */
  signOut(): Promise<void>;
  /** Stop timers; every later call fails with `TokenManagerClosedError`. */
  close(): void;
}

// A caller decides again after each wait; a few rounds are plenty (a refresh ends in a state
// that serves or fails), the bound only keeps a pathological provider from looping forever.
const MAX_ROUNDS = 4;

/**
 * A token manager: hands out a valid access token at once, refreshes it in the background
 * before it expires (when min(refreshWindowMs, 25 % of its lifetime) remains), shares one
 * refresh among concurrent callers and — through the store's lock — among processes,
 * backs off when the identity provider is down, and stops asking it once the refresh token
 * is dead (`reauth-required`, then `ReauthRequiredError` until `setTokens`).
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 * import { keyringStore, loginWithBrowser } from "connect-oidc/node";
 *
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "my-cli",
 *   store: keyringStore({ service: "my-cli", account: "default" }),
 *   onEvent: (e) => e.type === "refreshed" && console.error(`✓ Token refreshed (${e.reason})`),
 * });
 * try {
 *   await tokens.getAccessToken();
 * } catch {
 *   await tokens.setTokens(await loginWithBrowser({ issuer: "https://login.example.com", clientId: "my-cli" }));
 * }
 * ```
 */
export function createTokenManager(options: TokenManagerOptions): TokenManager {
  return createTokenManagerWith(options, undefined);
}

/** @internal `createTokenManager` with the openid-client adapter replaced (fault injection in tests). */
export function createTokenManagerWith(options: TokenManagerOptions, adapter: OidcAdapter | undefined): TokenManager {
  const settings = checkOptions(options);
  const store = options.store ?? memoryStore();
  const clock = options.clock ?? systemClock;
  const monotonic = monotonicOf(clock);
  const random = options.random ?? Math.random;
  const oidc = adapter ?? createOidcAdapter({ ...options, issuer: settings.issuer });
  const ours = (t: StoredTokens | undefined) =>
    t !== undefined && t.issuer.replace(/\/$/, "") === settings.issuer && t.clientId === settings.clientId ? t : undefined;
  const exchangeDeps: ExchangeDeps = {
    store,
    grant: settings.grant,
    issuer: settings.issuer,
    clientId: settings.clientId,
    refreshWindowMs: settings.refreshWindowMs,
    requestTokens: (refreshToken) => (refreshToken === undefined ? oidc.clientCredentials() : oidc.refresh(refreshToken)),
    wallNow: () => clock.now(),
    ours,
    noLogin: () => noLogin(settings),
    noRefreshToken: () => noRefreshToken(settings),
  };

  let state: State = { kind: "loading" };
  let timer: unknown;
  let loading: Promise<void> | undefined;
  let rechecking: Promise<void> | undefined;

  const now = () => ({ wall: clock.now(), monotonic: monotonic() });
  const locked = <T>(fn: () => Promise<T>): Promise<T> => (store.lock ? store.lock(fn) : fn());

  const emit = (event: TokenEvent) => {
    try {
      options.onEvent?.(event);
    } catch {
      // A listener's failure must not break token handling.
    }
  };

  /** The one place state changes: re-arm the timer, then announce the state entered. */
  const setState = (next: State) => {
    const previous = state;
    if (next === previous) return;
    state = next;
    arm(0);
    for (const event of entryEvents(previous, next, clock.now(), monotonic())) emit(event);
  };
  const apply = (input: Input) => setState(transition(state, input));

  const arm = (minimumMs: number) => {
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = undefined;
    const wake = wakeAt(state, settings);
    if (wake === undefined) return;
    // Wall-clock wakes sleep at most MAX_SLEEP_MS: the wall clock may step meanwhile.
    const delay = wake.monotonic !== undefined ? wake.monotonic - monotonic() : Math.min(wake.wall! - clock.now(), MAX_SLEEP_MS);
    timer = clock.setTimeout(onTimer, clampDelay(Math.max(delay, minimumMs)));
  };

  const onTimer = () => {
    timer = undefined;
    const decision = decide(state, now(), true, settings);
    if (decision.do === "refresh") void refresh(decision.reason);
    // Nothing due after all (an early wake, a clock step): look again, never in a tight loop.
    else arm(1000);
  };

  /** Start a refresh, or join the one in flight; settles (never rejects) when it is over. */
  const refresh = (reason: RefreshReason): Promise<void> => {
    if (state.kind === "refreshing") return state.flight.done;
    let finished!: () => void;
    const flight: Flight = { reason, done: new Promise<void>((resolve) => (finished = resolve)) };
    apply({ type: "refresh-started", flight });
    const started = state as State; // apply() changed it
    if (started.kind !== "refreshing" || started.flight !== flight) return Promise.resolve();
    void runRefresh(flight, started.login?.tokens, started.login?.inStore).finally(finished);
    return flight.done;
  };

  const runRefresh = async (flight: Flight, held: StoredTokens | undefined, inStore: StoredTokens | undefined) => {
    try {
      const result = await locked(() => exchangeUnderLock(exchangeDeps, { reason: flight.reason, held, inStore }));
      if (result.ok) return apply({ type: "refresh-done", flight, outcome: result.outcome, at: monotonic() });
      if (result.reauth || result.terminal) return apply(reauthInput(flight, result.error, result.terminal));
      apply(failedInput(flight, result.error, result.kept));
    } catch (error) {
      // The store or its lock failed (our own typed errors): transient.
      apply(failedInput(flight, error, undefined));
    }
  };

  const reauthInput = (flight: Flight, error: Error, terminal: boolean): Input => ({
    type: "reauth",
    flight,
    error:
      error instanceof ReauthRequiredError
        ? error
        : new ReauthRequiredError(
            `The login is no longer valid (${describeFailure(error)}): log in again and pass the result to setTokens()`,
            {
              cause: error,
            },
          ),
    terminal,
    at: monotonic(),
  });

  const failedInput = (flight: Flight, error: unknown, kept: RefreshOutcome | undefined): Input => {
    const failures = (state.kind === "refreshing" ? state.failures : 0) + 1;
    const at = monotonic();
    const delay = backoffDelay(failures, random, options.backoff);
    const wallRetryAt = clock.now() + delay;
    const expired = !usableAt(kept?.tokens ?? (state.kind === "refreshing" ? state.login?.tokens : undefined), clock.now());
    return {
      type: "refresh-failed",
      flight,
      at,
      retryAt: at + delay,
      ...(kept !== undefined ? { kept } : {}),
      error: new TokenRefreshError(
        `Could not refresh the access token: ${describeFailure(error)}${expired ? "; the current token has expired" : ""}; next attempt in ${Math.ceil(delay / 1000)} s`,
        { cause: summarizeFailure(error), retryAt: wallRetryAt },
      ),
    };
  };

  const load = (): Promise<void> =>
    (loading ??= (async () => {
      try {
        apply({ type: "loaded", stored: ours(await store.load()) });
      } finally {
        loading = undefined;
      }
    })());

  // While re-login is required: has another process logged in meanwhile?
  const recheck = (): Promise<void> =>
    (rechecking ??= (async () => {
      let stored: StoredTokens | undefined;
      try {
        stored = ours(await store.load());
      } catch {
        stored = undefined; // an unreadable store holds no new login; re-login is still the answer
      }
      apply({ type: "rechecked", stored, at: monotonic(), wallNow: clock.now() });
    })().finally(() => {
      rechecking = undefined;
    }));

  /** What a caller waits for before deciding again. */
  const waitFor = (decision: Decision): Promise<void> => {
    switch (decision.do) {
      case "load":
        return load();
      case "recheck":
        return recheck();
      case "refresh":
        return refresh(decision.reason);
      default:
        return state.kind === "refreshing" ? state.flight.done : Promise.resolve();
    }
  };

  const manager: TokenManager = {
    async getAccessToken(request = {}) {
      const { signal, rejected } = request;
      signal?.throwIfAborted();
      if (rejected !== undefined) apply({ type: "refused", token: rejected });
      for (let round = 1; ; round += 1) {
        const decision = decide(state, now(), false, settings);
        switch (decision.do) {
          case "serve":
            return decision.token;
          case "serve-and-refresh":
            void refresh(decision.reason);
            return decision.token;
          case "fail":
            if (decision.reauth) apply({ type: "reauth", error: decision.error as ReauthRequiredError, terminal: false, at: monotonic() });
            throw decision.error;
        }
        if (round > MAX_ROUNDS)
          throw new TokenRefreshError("No usable access token after several refreshes: the identity provider's tokens expire at once");
        await abortable(waitFor(decision), signal);
      }
    },

    accepted(token) {
      apply({ type: "accepted", token });
    },

    async setTokens(response) {
      const problem = tokenResponseProblem(response);
      if (problem !== undefined) throw new ConfigurationError(`setTokens: the token response ${problem}`);
      if (state.kind === "closed") throw closedError();
      const tokens = storedFromResponse(settings, response, clock.now());
      apply({ type: "replaced", tokens });
      // In memory first: if the store fails, this process still works (and the error says why others cannot).
      await locked(async () => {
        try {
          await store.save(tokens);
        } catch (error) {
          // What the store holds is not this login: remember what it is, so it is not taken for a newer one.
          apply({ type: "store-seen", stored: await store.load().then(ours, () => undefined) });
          throw error;
        }
      });
    },

    async signOut() {
      if (state.kind === "closed") throw closedError();
      apply({ type: "replaced", tokens: undefined });
      await locked(() => store.clear());
    },

    close() {
      apply({ type: "closed" });
    },

    [Symbol.dispose]() {
      manager.close();
    },
  };
  return manager;
}

/** Every option checked at the door; the settings the rules need. */
function checkOptions(options: TokenManagerOptions): Settings {
  const name = "createTokenManager";
  if (typeof options !== "object" || options === null) throw new ConfigurationError(`${name}: options are required`);
  const issuerUrl = checkIssuer(name, options.issuer, options.allowInsecureRequests);
  checkString(name, "clientId", options.clientId, true);
  checkString(name, "clientSecret", options.clientSecret, false);
  checkString(name, "scope", options.scope, false);
  checkString(name, "resource", options.resource, false);
  const grant = options.grant ?? "refresh_token";
  if (grant !== "refresh_token" && grant !== "client_credentials") {
    throw new ConfigurationError(`${name}: unknown grant ${JSON.stringify(grant)}`);
  }
  if (grant === "client_credentials" && options.clientSecret === undefined) {
    throw new ConfigurationError(`${name}: the client_credentials grant needs \`clientSecret\``);
  }
  checkDuration(name, "refreshWindowMs", options.refreshWindowMs, 0);
  checkDuration(name, "timeoutMs", options.timeoutMs, 1);
  checkDuration(name, "backoff.baseMs", options.backoff?.baseMs, 1);
  checkDuration(name, "backoff.maxMs", options.backoff?.maxMs, 1);
  checkFunction(name, "onEvent", options.onEvent);
  checkFunction(name, "random", options.random);
  return {
    grant,
    refreshWindowMs: options.refreshWindowMs ?? DEFAULT_REFRESH_WINDOW_MS,
    clientId: options.clientId,
    issuer: issuerUrl.href.replace(/\/$/, ""),
  };
}

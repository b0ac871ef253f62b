/**
 * The token manager's runner: the one place its state changes, and all that changes it —
 * the caller loop of getAccessToken() (decide, act, wait, decide again), the background
 * timer, the refresh in flight (the exchange under the store's lock, its result turned into
 * the next input) and the store reads outside a refresh. Every change re-arms the timer and
 * announces the state entered.
 *
 * Resource servers (`forResource`): a caller for a resource's token runs the same loop with
 * the resource named; its refresh is a flight like the main one's (one at a time: each
 * rotates the one refresh token), and the timer refreshes the resources this process
 * handed out as it refreshes the main token.
 *
 * The rules it runs are pure and elsewhere: the states and transition() in state.ts,
 * decide() and wakeAt() in decision.ts; one refresh under the lock is exchange.ts; what
 * `status()` reports is status.ts; sign-out's revocation is sign-out.ts.
 *
 * A refusal of the configuration (see misconfiguration.ts) is final only while the
 * configuration has never worked in this process: once the identity provider has granted
 * tokens to these options, the same answer did not come from a change of them (a
 * provider's deploy serving 404 for a minute) and is retried with backoff.
 */
import { abortable } from "../abortable.js";
import { clampDelay, monotonicOf } from "../clock.js";
import { closedError, ConfigurationError, ReauthRequiredError, TokenRefreshError } from "../errors.js";
import { storedKeyThumbprint } from "../dpop-key.js";
import { describeFailure, summarizeFailure } from "../failure.js";
import { type RequestSettings, tokenRequestMisconfiguration } from "../misconfiguration.js";
import type { OidcAdapter } from "../oidc.js";
import { type BackoffOptions, backoffDelay, DEMAND_RETRY_MS, MAX_SLEEP_MS } from "../policy.js";
import { createSingleFlight, type SingleFlight } from "../single-flight.js";
import type { Clock, LockHold, RefreshReason, StoredTokens, TokenEvent, TokenProvider } from "../types.js";
import { decide, type Now, serveUntil, wakeAt } from "./decision.js";
import type { TokenDPoP } from "./dpop.js";
import { type ExchangeDeps, exchangeUnderLock, ownLogin, usableLogin } from "./exchange.js";
import { revokeLogins, type SignOutResult } from "./sign-out.js";
import { entryEvents, type Flight, type Input, loginOf, type RefreshOutcome, type State, transition, usableAt } from "./state.js";
import { failureOf, type StatusRecord, statusOf, type TokenStatus } from "./status.js";

export interface MachineDeps extends ExchangeDeps {
  readonly clock: Clock;
  readonly oidc: Pick<OidcAdapter, "prepare" | "refresh" | "clientCredentials" | "revoke">;
  /** Told of every login the runner holds (proofs are signed with the key of the token's login). */
  readonly dpop: TokenDPoP;
  readonly onEvent: ((event: TokenEvent) => void) | undefined;
  /** Random source in [0, 1) for backoff jitter. */
  readonly random: () => number;
  readonly backoff: BackoffOptions | undefined;
  /** The settings a refusal of the configuration is explained with. */
  readonly request: RequestSettings;
}

/** The runner as the manager sees it: the public methods' work, and the state for a closed check. */
export interface Machine {
  readonly state: State;
  readonly getAccessToken: TokenProvider["getAccessToken"];
  /** The token getAccessToken() would resolve with now without waiting, or undefined. Never throws, never waits. */
  readonly current: () => string | undefined;
  readonly accepted: (token: string) => void;
  /** A provider of `resource`'s tokens (one per resource and runner). */
  readonly forResource: (resource: string) => ResourceTokenProvider;
  /** setTokens (tokens) or signOut (undefined): in memory at once, then in the store under its lock. */
  readonly replace: (tokens: StoredTokens | undefined) => Promise<void>;
  /** signOut: revoke as asked (sign-out.ts) under the store's lock, then clear it; `revoke: false` is `replace(undefined)`. */
  readonly signOut: (revoke: boolean | undefined) => Promise<SignOutResult>;
  /** What a status command prints; reads the store if it has not been read, never asks the identity provider. */
  readonly status: () => Promise<TokenStatus>;
  readonly close: () => void;
}

type TokenRequest = Parameters<TokenProvider["getAccessToken"]>[0];

/**
 * A resource server's tokens, as `forResource()` hands them out: a {@link TokenProvider} with `current()`.
 *
 * @example
 * ```ts
 * import { createAuthInterceptor, createTokenManager, type ResourceTokenProvider } from "connect-oidc";
 *
 * const tokens = createTokenManager({ issuer, clientId });
 * const events: ResourceTokenProvider = tokens.forResource("https://events.example.com");
 * const interceptor = createAuthInterceptor(events); // tokens whose `aud` is the events service
 * console.log(events.resource, events.current() !== undefined ? "a token at hand" : "none yet");
 * ```
 */
export interface ResourceTokenProvider extends TokenProvider {
  /** The token `getAccessToken()` would resolve with now without waiting, or undefined. Never throws, never waits. */
  current(): string | undefined;
  accepted(token: string): void;
  /** The resource indicator (RFC 8707) the tokens are for. */
  readonly resource: string;
}

// A caller decides again after each wait; a few rounds are plenty (a refresh ends in a state
// that serves or fails), the bound only keeps a pathological provider from looping forever.
const MAX_ROUNDS = 4;

/** The runner's record: what it runs with, and what changes. Only this file touches it. */
interface Run extends MachineDeps {
  state: State;
  timer: unknown;
  /**
   * `login-expiring` was emitted for the login held: once per login and process. A login set
   * here (setTokens) or found anew in the store while re-login was required starts afresh;
   * refreshes do not (a provider with a sliding lifetime moves the end at every refresh).
   */
  announced: boolean;
  /** The identity provider granted tokens to this configuration in this process. */
  worked: boolean;
  /** For status(): when tokens last came, the last failure. */
  record: StatusRecord;
  /** What a call with a token at hand reads, made anew with each state: see {@link Hot}. */
  hot: Hot;
  readonly monotonic: () => number;
  /** Callers that arrive together share one read of the store; the next caller reads again. */
  readonly loads: SingleFlight<void>;
  readonly rechecks: SingleFlight<void>;
  /** The resources this process hands out tokens for (`forResource`), and their providers. */
  readonly resources: Map<string, ResourceTokenProvider>;
}

export function createMachine(deps: MachineDeps): Machine {
  const loading: State = { kind: "loading" };
  const run: Run = {
    // The two fields every call reads first: in the object itself, not behind it.
    state: loading,
    hot: hotOf(loading, deps.settings),
    ...deps,
    timer: undefined,
    announced: false,
    worked: false,
    record: {},
    monotonic: monotonicOf(deps.clock),
    loads: createSingleFlight(),
    rechecks: createSingleFlight(),
    resources: new Map(),
  };
  return {
    get state() {
      return run.state;
    },
    getAccessToken: (request) => servedAtOnce(run, request) ?? getAccessToken(run, request),
    current: () => servableToken(run) ?? current(run),
    accepted: (token) => {
      if (token !== run.hot.accepted) accepted(run, token);
    },
    forResource: (resource) => resourceProvider(run, resource),
    replace: (tokens) => replace(run, tokens),
    signOut: (revoke) => signOut(run, revoke),
    status: () => status(run),
    close: () => apply(run, { type: "closed" }),
  };
}

// --- Callers ---------------------------------------------------------------------------

/** The provider of one resource's tokens: the runner's loop with the resource named. */
function resourceProvider(run: Run, resource: string): ResourceTokenProvider {
  const known = run.resources.get(resource);
  if (known !== undefined) return known;
  const provider: ResourceTokenProvider = {
    resource,
    getAccessToken: (request) => getAccessToken(run, request, resource),
    current: () => current(run, resource),
    accepted: (token) => apply(run, { type: "accepted", token, resource }),
    ...(run.dpop.prover !== undefined ? { dpop: run.dpop.prover } : {}),
  };
  run.resources.set(resource, provider);
  return provider;
}

/** The hot path: a ready state's answer is "serve" until a known wall time. */
function servedAtOnce(run: Run, request: TokenRequest): Promise<string> | undefined {
  if (request?.rejected !== undefined || request?.signal?.aborted === true) return undefined;
  const token = servableToken(run);
  return token === undefined ? undefined : Promise.resolve(token);
}

function servableToken(run: Run): string | undefined {
  return run.clock.now() < run.hot.until ? run.hot.token : undefined;
}

/**
 * What every call with a token at hand reads, made with each (immutable) state: decide()'s
 * answer "serve `token`" until the wall clock reaches `until` (see serveUntil), and the
 * token a server accepted in this state (reporting it again changes nothing). A few fields
 * of one small object: the interceptor's current() and accepted() run once per call, and
 * at one call in flight they run with cold caches (each object and function touched costs).
 */
interface Hot {
  readonly token: string | undefined;
  readonly until: number;
  accepted: string | undefined;
}

function hotOf(state: State, settings: MachineDeps["settings"]): Hot {
  const serve = serveUntil(state, settings);
  return { token: serve?.token, until: serve?.until ?? Number.NEGATIVE_INFINITY, accepted: undefined };
}

/** A server accepted `token`: the state takes note; the same report in the state entered changes nothing, and is skipped. */
function accepted(run: Run, token: string): void {
  apply(run, { type: "accepted", token });
  run.hot.accepted = token;
}

/**
 * Decide, act, and — after a wait — decide again against whatever state the wait ended in.
 * `resource`: for that resource server's token (undefined: the main token).
 */
async function getAccessToken(run: Run, request: TokenRequest = {}, resource?: string): Promise<string> {
  const { signal, rejected } = request;
  signal?.throwIfAborted();
  const refused: Input | undefined = rejected === undefined ? undefined : { type: "refused", token: rejected, resource };
  if (refused !== undefined) apply(run, refused);
  // Other tokens' refreshes may come first, one at a time: each is a wait of its own.
  const maxRounds = MAX_ROUNDS + run.resources.size;
  for (let round = 1; ; round += 1) {
    const decision = decide(run.state, now(run), false, run.settings, resource);
    let wait: Promise<void>;
    switch (decision.do) {
      case "serve":
        return decision.token;
      case "serve-and-refresh":
        void refresh(run, decision.reason, resource);
        return decision.token;
      case "fail":
        if (decision.reauth) {
          apply(run, { type: "reauth", error: decision.error as ReauthRequiredError, terminal: false, at: run.monotonic() });
        }
        throw decision.error;
      case "load":
        // A refusal reported before the login was loaded is about the loaded login's token.
        wait = load(run).then(() => {
          if (refused !== undefined) apply(run, refused);
        });
        break;
      case "recheck":
        wait = recheck(run);
        break;
      case "refresh":
        wait = refresh(run, decision.reason, resource);
        break;
      default: {
        const state = run.state;
        wait = state.kind === "refreshing" ? state.flight.done : Promise.resolve();
      }
    }
    if (round > maxRounds) {
      throw new TokenRefreshError("No usable access token after several refreshes: the identity provider's tokens expire at once");
    }
    await abortable(wait, signal);
  }
}

/** What getAccessToken() would resolve with now without waiting; a due background refresh starts, as from the timer. */
function current(run: Run, resource?: string): string | undefined {
  const decision = decide(run.state, now(run), false, run.settings, resource);
  if (decision.do === "serve") return decision.token;
  if (decision.do !== "serve-and-refresh") return undefined;
  void refresh(run, decision.reason, resource);
  return decision.token;
}

/**
 * setTokens / signOut: in memory first — if the store fails, this process still works (and
 * the error says why others cannot). `write`: what is done in the store under its lock.
 */
async function replace(
  run: Run,
  tokens: StoredTokens | undefined,
  write: () => Promise<void> = tokens === undefined ? () => run.store.clear() : () => run.store.save(tokens),
): Promise<void> {
  if (run.state.kind === "closed") throw closedError();
  apply(run, { type: "replaced", tokens });
  try {
    await locked(run, write);
  } catch (error) {
    // What the store still holds is remembered as such, so it is never taken for another process's newer login.
    const stored = await run.store.load().then(
      (loaded) => ownLogin(run, loaded),
      () => undefined,
    );
    apply(run, { type: "store-seen", stored });
    throw error;
  }
}

/**
 * Sign out: no token is handed out from now on; under the store's lock, the login held and
 * the one stored (another process may have refreshed it) are revoked as asked, then the
 * store is cleared — every process sharing it finds no login at its next refresh.
 */
async function signOut(run: Run, revoke: boolean | undefined): Promise<SignOutResult> {
  if (revoke === false) {
    await replace(run, undefined);
    return { revoked: false };
  }
  const held = loginOf(run.state)?.tokens;
  let result: SignOutResult = { revoked: false };
  await replace(run, undefined, async () => {
    const stored = await run.store.load().then(
      (loaded) => ownLogin(run, loaded),
      () => undefined,
    );
    result = await revokeLogins(run.oidc, [held, stored], revoke);
    await run.store.clear();
  });
  if (result.error !== undefined) run.record = { ...run.record, lastFailure: failureOf(result.error, run.clock.now()) };
  return result;
}

/** The status of the state (the store read first if it has not been); the DPoP key's thumbprint computed here. */
async function status(run: Run): Promise<TokenStatus> {
  if (run.state.kind === "loading") await load(run);
  const state = run.state;
  const reported = statusOf(state, run.record, now(run), run.settings);
  const key = loginOf(state)?.tokens.dpopKey;
  if (key === undefined || reported.tokenType !== "DPoP") return reported;
  const thumbprint = await storedKeyThumbprint(key).catch(() => undefined);
  return thumbprint === undefined ? reported : { ...reported, dpopThumbprint: thumbprint };
}

// --- The one place state changes, and the timer ------------------------------------------

function now(run: Run): Now {
  return { wall: run.clock.now(), monotonic: run.monotonic() };
}

/** Feed an input to transition(); a changed state re-arms the timer and emits its events. */
function apply(run: Run, input: Input): void {
  const previous = run.state;
  const next = transition(previous, input);
  if (next === previous) return;
  run.state = next;
  run.hot = hotOf(next, run.settings);
  run.dpop.remember(loginOf(next)?.tokens);
  if (input.type === "replaced" || (input.type === "rechecked" && next.kind === "ready")) run.announced = false;
  arm(run, 0);
  for (const event of entryEvents(previous, next, run.clock.now(), run.monotonic())) {
    record(run, event);
    emit(run, event);
  }
  announceExpiring(run);
}

/** What status() reports besides the state, from the events a state announces. */
function record(run: Run, event: TokenEvent): void {
  const at = run.clock.now();
  if (event.type === "refreshed" || event.type === "adopted") run.record = { ...run.record, lastRefreshAt: at };
  else if (event.type === "refresh-failed" || event.type === "reauth-required" || event.type === "misconfigured") {
    run.record = { ...run.record, lastFailure: failureOf(event.error, at) };
  }
}

function emit(run: Run, event: TokenEvent): void {
  try {
    run.onEvent?.(event);
  } catch {
    // A listener's failure must not break token handling.
  }
}

function arm(run: Run, minimumMs: number): void {
  const { clock } = run;
  if (run.timer !== undefined) clock.clearTimeout(run.timer);
  run.timer = undefined;
  const due = wakeAt(run.state, run.settings, heldResources(run));
  const expiring = expiringAt(run);
  const wake = expiring === undefined ? due : { ...due, wall: Math.min(due?.wall ?? expiring, expiring) };
  if (wake === undefined) return;
  // Wall-clock wakes sleep at most MAX_SLEEP_MS: the wall clock may step meanwhile.
  const wallDelay = wake.wall === undefined ? Number.POSITIVE_INFINITY : Math.min(wake.wall - clock.now(), MAX_SLEEP_MS);
  const delay = Math.min(wake.monotonic !== undefined ? wake.monotonic - run.monotonic() : Number.POSITIVE_INFINITY, wallDelay);
  run.timer = clock.setTimeout(() => onTimer(run), clampDelay(Math.max(delay, minimumMs)));
}

function onTimer(run: Run): void {
  run.timer = undefined;
  announceExpiring(run);
  const at = now(run);
  // The main token first, then the resources this process holds a token for; one refresh at a time.
  for (const resource of [undefined, ...heldResources(run)]) {
    const decision = decide(run.state, at, true, run.settings, resource);
    if (decision.do === "refresh") return void refresh(run, decision.reason, resource);
  }
  // Nothing due after all (an early wake, a clock step): look again, never in a tight loop.
  arm(run, 1000);
}

/** The resources handed out here whose token the login holds: the timer keeps those fresh (the others are fetched on demand). */
function heldResources(run: Run): string[] {
  const held = loginOf(run.state)?.tokens.resources;
  return held === undefined ? [] : [...run.resources.keys()].filter((resource) => held[resource] !== undefined);
}

/** When `login-expiring` is due for the login held (wall clock), unless already announced. */
function expiringAt(run: Run): number | undefined {
  const end = loginOf(run.state)?.tokens.refreshExpiresAt;
  return end === undefined || run.announced ? undefined : end - run.settings.loginExpiringMs;
}

function announceExpiring(run: Run): void {
  const at = expiringAt(run);
  if (at === undefined || run.clock.now() < at) return;
  run.announced = true;
  emit(run, { type: "login-expiring", expiresAt: at + run.settings.loginExpiringMs });
}

// --- The store outside a refresh ---------------------------------------------------------

/**
 * Read the login at startup. A failing store rejects (the caller sees why); the next call
 * reads again. A login that does not fit the `dpop` option is loaded and at once marked
 * re-login required with its problem (the caller sees why).
 */
function load(run: Run): Promise<void> {
  return run.loads.run(async () => {
    const stored = ownLogin(run, await run.store.load());
    const unusable = stored === undefined ? undefined : run.dpop.problem(stored);
    apply(run, { type: "loaded", stored });
    if (unusable !== undefined) apply(run, { type: "reauth", error: unusable, terminal: false, at: run.monotonic() });
  });
}

/** While re-login is required: look for another process's login; an unreadable store holds none. */
function recheck(run: Run): Promise<void> {
  return run.rechecks.run(async () => {
    // A store that throws at once is as unreadable as one that rejects.
    const stored = await Promise.resolve()
      .then(() => run.store.load())
      .then(
        (loaded) => usableLogin(run, loaded),
        () => undefined,
      );
    const { wall, monotonic } = now(run);
    apply(run, { type: "rechecked", stored, at: monotonic, wallNow: wall });
  });
}

function locked<T>(run: Run, fn: (hold?: LockHold) => Promise<T>): Promise<T> {
  return run.store.lock ? run.store.lock(fn) : fn();
}

// --- The refresh in flight ---------------------------------------------------------------

/** Start a refresh, or join the one in flight: settles (never rejects) when it is over. */
function refresh(run: Run, reason: RefreshReason, resource?: string): Promise<void> {
  const current = run.state;
  // Whatever the flight is for: the caller decides again when it is over.
  if (current.kind === "refreshing") return current.flight.done;
  let finished!: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));
  const common = { reason, done, grant: run.settings.grant, startedAt: run.monotonic() };
  const flight: Flight = resource === undefined ? common : { ...common, resource };
  apply(run, { type: "refresh-started", flight });
  const started = run.state;
  if (started.kind !== "refreshing" || started.flight !== flight) return Promise.resolve();
  void runRefresh(run, flight, started.login?.tokens, started.login?.inStore).finally(finished);
  return flight.done;
}

/** The exchange under the store's lock, its result turned into the next input. */
async function runRefresh(run: Run, flight: Flight, held: StoredTokens | undefined, inStore: StoredTokens | undefined): Promise<void> {
  try {
    await run.oidc.prepare?.();
    const { reason, resource } = flight;
    const result = await locked(run, (hold) => exchangeUnderLock(run, { reason, held, inStore, hold, resource }));
    if (result.ok) {
      run.worked ||= !result.outcome.adopted;
      return apply(run, { type: "refresh-done", flight, outcome: result.outcome, at: run.monotonic() });
    }
    // Our own ConfigurationError from before the request (a client assertion file that cannot be used) counts as one.
    const misconfiguration =
      result.error instanceof ConfigurationError
        ? result.error
        : tokenRequestMisconfiguration(result.error, resource === undefined ? run.request : { ...run.request, resource });
    if (misconfiguration !== undefined) {
      if (!run.worked || firstOfResource(run, flight)) return apply(run, { type: "misconfigured", flight, error: misconfiguration });
      return apply(run, failedInput(run, flight, misconfiguration, result.kept, result.retryAfterMs ?? 0));
    }
    if (result.reauth || result.terminal) return apply(run, reauthInput(run, flight, result.error, result.terminal));
    apply(run, failedInput(run, flight, result.error, result.kept, result.retryAfterMs ?? 0));
  } catch (error) {
    // The store or its lock failed (our own typed errors): transient.
    apply(run, failedInput(run, flight, error, undefined, 0));
  }
}

/** The refresh is the first for its resource in this login: a refusal of it is the resource's alone (see state.ts). */
function firstOfResource(run: Run, flight: Flight): boolean {
  const login = loginOf(run.state);
  return flight.resource !== undefined && login !== undefined && login.tokens.resources?.[flight.resource] === undefined;
}

function reauthInput(run: Run, flight: Flight, error: Error, terminal: boolean): Input {
  return {
    type: "reauth",
    flight,
    error:
      error instanceof ReauthRequiredError
        ? error
        : new ReauthRequiredError(
            `The login is no longer valid (${describeFailure(error)}): log in again and pass the result to setTokens()`,
            { cause: error },
          ),
    terminal,
    at: run.monotonic(),
  };
}

function failedInput(run: Run, flight: Flight, error: unknown, kept: RefreshOutcome | undefined, retryAfterMs: number): Input {
  const state = run.state;
  const failures = (state.kind === "refreshing" ? state.failures : 0) + 1;
  const { wall, monotonic } = now(run);
  // The provider's Retry-After, when it gave one, holds for the schedule and for callers alike.
  const delay = Math.max(backoffDelay(failures, run.random, run.backoff), retryAfterMs);
  const expired = !usableAt(kept?.tokens ?? (state.kind === "refreshing" ? state.login?.tokens : undefined), wall);
  return {
    type: "refresh-failed",
    flight,
    at: monotonic,
    retryAt: monotonic + delay,
    demandRetryAt: monotonic + Math.max(DEMAND_RETRY_MS, retryAfterMs),
    ...(kept !== undefined ? { kept } : {}),
    error: new TokenRefreshError(
      `Could not refresh the access token: ${describeFailure(error)}${error instanceof ConfigurationError ? " (these settings worked before in this process: taken to pass)" : ""}${expired ? "; the current token has expired" : ""}; next attempt in ${Math.ceil(delay / 1000)} s`,
      { cause: summarizeFailure(error), retryAt: wall + delay },
    ),
  };
}

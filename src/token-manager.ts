/**
 * The token manager: holds the current login, hands out valid access tokens, refreshes
 * them in the background before they expire, and shares one refresh among concurrent
 * callers (and, through the store's lock, among processes).
 *
 * It is wiring: the states and their rules are in token-state.ts, what to do for a caller
 * in token-decision.ts, the one place state changes (timer, events) in token-machine.ts,
 * starting a refresh in token-refresh.ts and the refresh under the lock in
 * token-exchange.ts, the timing policy in policy.ts.
 */
import { abortable } from "./abortable.js";
import { systemClock } from "./clock.js";
import { ConfigurationError, type ReauthRequiredError, TokenRefreshError } from "./errors.js";
import {
  type ClientAssertion,
  type ClientAuthentication,
  type ClientPrivateKey,
  checkClientAuthentication,
  credentialsKind,
} from "./client-auth.js";
import { type DPoPOption, dpopAlgorithm } from "./dpop-key.js";
import { memoryStore } from "./memory-store.js";
import { createOidcAdapter, type OidcAdapter } from "./oidc.js";
import { checkDuration, checkFunction, checkIssuer, checkString } from "./options.js";
import { DEFAULT_LOGIN_EXPIRING_MS, DEFAULT_REFRESH_WINDOW_MS } from "./policy.js";
import { tokenResponseProblem } from "./stored-tokens.js";
import { closedError, decide, noLogin, noRefreshToken, type Settings, serveUntil } from "./token-decision.js";
import { storedFromResponse } from "./token-exchange.js";
import { createTokenDPoP } from "./token-dpop.js";
import { createMachine, type Machine } from "./token-machine.js";
import { createRefresher } from "./token-refresh.js";
import { loginOf, type State } from "./token-state.js";
import { createStoreReads, type StoreReads } from "./token-store-reads.js";
import type {
  Clock,
  LockHold,
  RefreshReason,
  StoredTokens,
  TokenEndpointResponse,
  TokenEvent,
  TokenProvider,
  TokenStore,
} from "./types.js";

/**
 * Options of {@link createTokenManager}. Only `issuer` and `clientId` are required; the
 * defaults suit a public client (a CLI) with a refresh token in memory.
 *
 * @example
 * ```ts
 * import { createTokenManager, type TokenManagerOptions } from "connect-oidc";
 *
 * // A service on the client credentials grant, tokens for one API.
 * const options: TokenManagerOptions = {
 *   issuer: "https://login.example.com",
 *   clientId: "my-service",
 *   clientSecret: process.env.CLIENT_SECRET,
 *   grant: "client_credentials",
 *   resource: "https://api.example.com",
 *   refreshWindowMs: 5 * 60_000,
 * };
 * const tokens = createTokenManager(options);
 * ```
 */
export interface TokenManagerOptions {
  /** Issuer URL; discovered through openid-client before the first token request of a process (again after a day). */
  readonly issuer: string | URL;
  readonly clientId: string;
  /** For confidential clients. */
  readonly clientSecret?: string;
  /**
   * How the client authenticates at the token endpoint. Default: private_key_jwt with
   * `clientPrivateKey`; none without a secret; with `clientSecret`, client_secret_basic when
   * the provider lists it (or lists nothing), else client_secret_post. Pick
   * client_secret_post for servers that do not decode form-encoded Basic credentials
   * (a secret with `-`, `_`, `.`, `~` then fails with basic).
   */
  readonly clientAuthentication?: ClientAuthentication;
  /** For private_key_jwt: the client's private key (WebCrypto), with its `kid` if the provider needs one. */
  readonly clientPrivateKey?: ClientPrivateKey;
  /**
   * For private_key_jwt with a JWT from elsewhere (RFC 7523, workload identity): a function
   * giving the assertion, asked before every token request (e.g. `clientAssertionFromFile`
   * from connect-oidc/node for a Kubernetes projected service-account token). Instead of
   * `clientPrivateKey`.
   */
  readonly clientAssertion?: ClientAssertion;
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
  /**
   * `login-expiring` is emitted this long before the login ends, when the provider tells
   * (`refresh_expires_in`, `refresh_token_expires_in`). Default 24 h.
   */
  readonly loginExpiringMs?: number;
  /** Time source, for tests that drive hours in milliseconds. Default: the system clock. */
  readonly clock?: Clock;
  /** Random source in [0, 1) for backoff jitter. Default Math.random. */
  readonly random?: () => number;
  /** Backoff after transient failures; defaults 1 s doubling to 60 s. */
  readonly backoff?: { readonly baseMs?: number; readonly maxMs?: number };
  /**
   * DPoP (RFC 9449): `true` (ES256) or `{ algorithm }`. Tokens are bound to the login's key
   * pair (made by the login with the same option and kept with the login in the store; for
   * client credentials made here), every token request and every call carries a proof, and
   * the interceptor sends `authorization: DPoP <token>`. A login without its key is a
   * `DPoPKeyError`, never a bearer fallback. Default: off (bearer tokens).
   */
  readonly dpop?: DPoPOption;
}

/**
 * What {@link createTokenManager} returns: a {@link TokenProvider} for the interceptor, plus
 * the login's life cycle (`setTokens` after a login, `signOut`, `close`).
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 * import { loginWithBrowser } from "connect-oidc/node";
 *
 * using tokens = createTokenManager({ issuer, clientId }); // closed at the end of the block
 * await tokens.setTokens(await loginWithBrowser({ issuer, clientId }));
 * const token = await tokens.getAccessToken(); // valid now; refreshed in the background
 * await tokens.signOut(); // forget the login, clear the store
 * ```
 */
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
 * is dead (`reauth-required`, then `ReauthRequiredError` until `setTokens`) or once it has
 * refused options that never worked in this process (`misconfigured`, then
 * `ProviderConfigurationError`: fix the issuer, client id, secret, scope, ...).
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
  const oidc = adapter ?? createOidcAdapter({ ...options, issuer: settings.issuer });
  const dpop = createTokenDPoP({
    algorithm: settings.dpop,
    keepsCryptoKeys: store.keepsCryptoKeys === true,
    clientId: settings.clientId,
    issuer: settings.issuer,
    wallNow: () => clock.now(),
    currentLogin: () => loginOf(machine.state)?.tokens,
  });
  const isOurs = (t: StoredTokens | undefined) =>
    t !== undefined && t.issuer.replace(/\/$/, "") === settings.issuer && t.clientId === settings.clientId ? t : undefined;
  // Client credentials need no login: tokens that do not fit the `dpop` option are simply not there.
  const ours =
    settings.grant === "client_credentials"
      ? (t: StoredTokens | undefined) => (isOurs(t) !== undefined && dpop.problem(t!) === undefined ? t : undefined)
      : isOurs;
  /** A stored login this manager can use as it is: another process's login is adopted only then. */
  const usable = (t: StoredTokens | undefined) => (ours(t) !== undefined && dpop.problem(t!) === undefined ? t : undefined);
  const locked = <T>(fn: (hold?: LockHold) => Promise<T>): Promise<T> => (store.lock ? store.lock(fn) : fn());

  const machine = createMachine({
    settings,
    clock,
    onEvent: options.onEvent,
    onDue: (reason) => void refresh(reason),
    onChange: (state) => dpop.remember(loginOf(state)?.tokens),
  });
  const refresh = createRefresher({
    machine,
    locked,
    random: options.random ?? Math.random,
    backoff: options.backoff,
    request: {
      issuer: settings.issuer,
      clientId: settings.clientId,
      grant: settings.grant,
      credentials: credentialsKind(options),
      ...(options.scope !== undefined ? { scope: options.scope } : {}),
      ...(options.resource !== undefined ? { resource: options.resource } : {}),
    },
    exchange: {
      store,
      grant: settings.grant,
      issuer: settings.issuer,
      clientId: settings.clientId,
      refreshWindowMs: settings.refreshWindowMs,
      requestTokens: (refreshToken, keyPair) =>
        refreshToken === undefined ? oidc.clientCredentials(keyPair) : oidc.refresh(refreshToken, keyPair),
      ...(oidc.prepare !== undefined ? { prepareRequest: () => oidc.prepare?.() ?? Promise.resolve() } : {}),
      ...(settings.dpop !== undefined ? { dpop } : {}),
      wallNow: () => clock.now(),
      ours: usable,
      noLogin: () => noLogin(settings),
      noRefreshToken: () => noRefreshToken(settings),
    },
  });
  const reads = createStoreReads(machine, store, ours, dpop.problem);

  /**
   * Write a login set here (or its removal) under the lock. If that fails — the store or the
   * lock — what the store still holds is remembered as such, so it is never taken for
   * another process's newer login.
   */
  const persist = async (write: () => Promise<void>) => {
    try {
      await locked(write);
    } catch (error) {
      machine.apply({ type: "store-seen", stored: await store.load().then(ours, () => undefined) });
      throw error;
    }
  };

  // decide()'s answer cached for one (immutable) state: see serveUntil.
  let fastState: State | undefined;
  let fastServe: ReturnType<typeof serveUntil>;

  const manager: TokenManager = {
    getAccessToken(request) {
      // The hot path: a ready state's answer is "serve" until a known wall time.
      if (request?.rejected === undefined && request?.signal?.aborted !== true) {
        const state = machine.state;
        if (fastState !== state) {
          fastState = state;
          fastServe = serveUntil(state, settings);
        }
        if (fastServe !== undefined && clock.now() < fastServe.until) return Promise.resolve(fastServe.token);
      }
      return getAccessToken({ machine, settings, refresh, reads }, request);
    },
    accepted(token) {
      machine.apply({ type: "accepted", token });
    },
    async setTokens(response) {
      const problem = tokenResponseProblem(response);
      if (problem !== undefined) throw new ConfigurationError(`setTokens: the token response ${problem}`);
      if (machine.state.kind === "closed") throw closedError();
      const sentAt = clock.now();
      // Only a DPoP login waits here (its key is exported or made non-extractable first).
      const pendingKey = dpop.keyOfResponse(response);
      const dpopKey = pendingKey === undefined ? undefined : await pendingKey;
      if ((machine.state as State).kind === "closed") throw closedError();
      const tokens = storedFromResponse(settings, response, sentAt, undefined, dpopKey);
      machine.apply({ type: "replaced", tokens });
      // In memory first: if the store fails, this process still works (and the error says why others cannot).
      await persist(() => store.save(tokens));
    },
    async signOut() {
      if (machine.state.kind === "closed") throw closedError();
      machine.apply({ type: "replaced", tokens: undefined });
      await persist(() => store.clear());
    },
    close() {
      machine.apply({ type: "closed" });
    },
    [Symbol.dispose]() {
      manager.close();
    },
    ...(dpop.prover !== undefined ? { dpop: dpop.prover } : {}),
  };
  return manager;
}

interface Parts {
  readonly machine: Machine;
  readonly settings: Settings;
  readonly refresh: (reason: RefreshReason) => Promise<void>;
  readonly reads: StoreReads;
}

/** Decide, act, and — after a wait — decide again against whatever state the wait ended in. */
async function getAccessToken(
  { machine, settings, refresh, reads }: Parts,
  request: Parameters<TokenProvider["getAccessToken"]>[0] = {},
): Promise<string> {
  const { signal, rejected } = request;
  signal?.throwIfAborted();
  if (rejected !== undefined) machine.apply({ type: "refused", token: rejected });
  for (let round = 1; ; round += 1) {
    const decision = decide(machine.state, machine.now(), false, settings);
    let wait: Promise<void>;
    switch (decision.do) {
      case "serve":
        return decision.token;
      case "serve-and-refresh":
        void refresh(decision.reason);
        return decision.token;
      case "fail":
        if (decision.reauth) {
          machine.apply({ type: "reauth", error: decision.error as ReauthRequiredError, terminal: false, at: machine.monotonic() });
        }
        throw decision.error;
      case "load":
        // A refusal reported before the login was loaded is about the loaded login's token.
        wait = reads.load().then(() => {
          if (rejected !== undefined) machine.apply({ type: "refused", token: rejected });
        });
        break;
      case "recheck":
        wait = reads.recheck();
        break;
      case "refresh":
        wait = refresh(decision.reason);
        break;
      default: {
        const state = machine.state;
        wait = state.kind === "refreshing" ? state.flight.done : Promise.resolve();
      }
    }
    if (round > MAX_ROUNDS) {
      throw new TokenRefreshError("No usable access token after several refreshes: the identity provider's tokens expire at once");
    }
    await abortable(wait, signal);
  }
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
  checkClientAuthentication(name, options);
  if (
    grant === "client_credentials" &&
    options.clientSecret === undefined &&
    options.clientPrivateKey === undefined &&
    options.clientAssertion === undefined
  ) {
    throw new ConfigurationError(
      `${name}: the client_credentials grant needs \`clientSecret\`, \`clientPrivateKey\` or \`clientAssertion\``,
    );
  }
  checkDuration(name, "refreshWindowMs", options.refreshWindowMs, 0);
  checkDuration(name, "loginExpiringMs", options.loginExpiringMs, 0);
  checkDuration(name, "timeoutMs", options.timeoutMs, 1);
  checkDuration(name, "backoff.baseMs", options.backoff?.baseMs, 1);
  checkDuration(name, "backoff.maxMs", options.backoff?.maxMs, 1);
  checkFunction(name, "onEvent", options.onEvent);
  checkFunction(name, "random", options.random);
  const dpop = dpopAlgorithm(name, options.dpop);
  return {
    grant,
    refreshWindowMs: options.refreshWindowMs ?? DEFAULT_REFRESH_WINDOW_MS,
    loginExpiringMs: options.loginExpiringMs ?? DEFAULT_LOGIN_EXPIRING_MS,
    clientId: options.clientId,
    issuer: issuerUrl.href.replace(/\/$/, ""),
    ...(dpop !== undefined ? { dpop } : {}),
  };
}

/**
 * The token manager's front door: its options (checked here), its construction, and the
 * public methods, which hand the work to the runner (machine.ts) or the DPoP part
 * (dpop.ts). It keeps no state and runs no loop of its own: what a call does is decided in
 * decision.ts over the states of state.ts, and run in machine.ts; one refresh under the
 * store's lock is exchange.ts; the timing policy is policy.ts.
 */
import {
  type ClientAssertion,
  type ClientAuthentication,
  type ClientPrivateKey,
  checkClientAuthentication,
  credentialsKind,
} from "../client-auth.js";
import { systemClock } from "../clock.js";
import { type DPoPOption, dpopAlgorithm } from "../dpop-key.js";
import { closedError, ConfigurationError } from "../errors.js";
import { memoryStore } from "../memory-store.js";
import type { RequestSettings } from "../misconfiguration.js";
import { createOidcAdapter, type OidcAdapter } from "../oidc.js";
import { checkDuration, checkFunction, checkIssuer, checkString } from "../options.js";
import { DEFAULT_LOGIN_EXPIRING_MS, DEFAULT_REFRESH_WINDOW_MS } from "../policy.js";
import { tokenResponseProblem } from "../stored-tokens.js";
import type { Clock, CustomFetch, TokenEndpointResponse, TokenEvent, TokenProvider, TokenStore } from "../types.js";
import type { Settings } from "./decision.js";
import { createTokenDPoP } from "./dpop.js";
import { storedFromResponse } from "./exchange.js";
import { createMachine, type ResourceTokenProvider } from "./machine.js";
import type { SignOutOptions, SignOutResult } from "./sign-out.js";
import type { TokenStatus } from "./status.js";

export type { ResourceTokenProvider } from "./machine.js";
export type { SignOutOptions, SignOutResult } from "./sign-out.js";

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
  /**
   * Your own `fetch` for every request to the identity provider (discovery, token requests):
   * a proxy, a private CA, a client certificate (mTLS), instrumentation. Default: the global
   * `fetch`. If it throws, the refresh fails like an outage (`TokenRefreshError`, backoff).
   */
  readonly fetch?: CustomFetch;
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
 * console.log((await tokens.status()).state); // "ready"
 * await tokens.signOut(); // revoke at the provider, forget the login, clear the store
 * ```
 */
export interface TokenManager extends TokenProvider, Disposable {
  /**
   * The access token `getAccessToken()` would resolve with right now without waiting for
   * anything (the login is usable now, no forced refresh pending), or undefined when the
   * caller must call `getAccessToken()`: before the login is loaded, once the token has
   * expired, while re-login is required, after `close()`. Never throws, does no I/O, never
   * waits; a background refresh that is due starts, as the timer would start it.
   */
  current(): string | undefined;
  /** A server accepted `token`: the interceptor calls this after every successful call. */
  accepted(token: string): void;
  /**
   * The tokens of another resource server (RFC 8707 resource indicator, an absolute URI):
   * a {@link TokenProvider} for `createAuthInterceptor`, whose access tokens are obtained
   * with this login's refresh token (`resource` on the refresh), kept with the login in the
   * store, refreshed before they expire and when a server refuses one, like the main
   * token. Every refresh, whatever it is for, goes through the same single refresh and the
   * store's lock. The same provider for the same resource.
   *
   * @example
   * ```ts
   * import { createAuthInterceptor, createTokenManager } from "connect-oidc";
   *
   * const tokens = createTokenManager({ issuer, clientId, store });
   * const events = createAuthInterceptor(tokens.forResource("https://events.example.com"));
   * const tools = createAuthInterceptor(tokens.forResource("https://tools.example.com"));
   * ```
   */
  forResource(resource: string | URL): ResourceTokenProvider;
  /** Adopt the result of a login; persisted to the store. */
  setTokens(response: TokenEndpointResponse): Promise<void>;
  /**
   * Sign out: revoke the login at the identity provider (RFC 7009: its refresh token, then
   * its access token, with the client's authentication) when the provider lists a
   * `revocation_endpoint` (`revoke` decides: see {@link SignOutOptions}), then forget it and
   * clear the store — other processes sharing the store find no login at their next
   * refresh. A failed revocation still signs out here: the result says so (`error`, a
   * `RevocationError`). Rejects only when the store cannot be cleared.
   */
  signOut(options?: SignOutOptions): Promise<SignOutResult>;
  /**
   * What a `whoami` / `status` command prints — the state, the token's and the login's
   * expiry, scope, token type, who is logged in, the last refresh and failure — and never
   * a token or a secret. Reads the store when the manager has not yet; never contacts the
   * identity provider.
   */
  status(): Promise<TokenStatus>;
  /** Stop timers; every later call fails with `TokenManagerClosedError`. */
  close(): void;
}

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

/**
 * @internal `createTokenManager` with the openid-client adapter replaced: for the heap
 * bench (bench/heap.ts) only, whose 10,000 cycles measure the manager's own state. Tests
 * inject faults at the HTTP level through the `fetch` option instead. Not exported from
 * any entry.
 */
export function createTokenManagerWith(options: TokenManagerOptions, adapter: OidcAdapter | undefined): TokenManager {
  const settings = checkOptions(options);
  const store = options.store ?? memoryStore();
  const clock = options.clock ?? systemClock;
  const dpop = createTokenDPoP({
    algorithm: settings.dpop,
    keepsCryptoKeys: store.keepsCryptoKeys === true,
    clientId: settings.clientId,
    issuer: settings.issuer,
    clock,
  });
  const machine = createMachine({
    settings,
    store,
    clock,
    dpop,
    oidc: adapter ?? createOidcAdapter({ ...options, issuer: settings.issuer }),
    onEvent: options.onEvent,
    random: options.random ?? Math.random,
    backoff: options.backoff,
    request: requestSettings(options, settings),
  });

  const manager: TokenManager = {
    getAccessToken: machine.getAccessToken,
    current: machine.current,
    accepted: machine.accepted,
    forResource: (resource) => machine.forResource(checkResource(resource)),
    async setTokens(response) {
      const problem = tokenResponseProblem(response);
      if (problem !== undefined) throw new ConfigurationError(`setTokens: the token response ${problem}`);
      if (machine.state.kind === "closed") throw closedError();
      const sentAt = clock.now();
      // Only a DPoP login waits here (its key is exported or made non-extractable first).
      const pendingKey = dpop.keyOfResponse(response);
      const dpopKey = pendingKey === undefined ? undefined : await pendingKey;
      await machine.replace(storedFromResponse(settings, response, sentAt, undefined, dpopKey));
    },
    signOut: (signOutOptions) => machine.signOut(checkSignOut(signOutOptions)),
    status: machine.status,
    close: machine.close,
    [Symbol.dispose]: machine.close,
    ...(dpop.prover !== undefined ? { dpop: dpop.prover } : {}),
  };
  return manager;
}

/** `signOut`'s `revoke`, checked: a typo must not silently skip (or force) the revocation. */
function checkSignOut(options: SignOutOptions | undefined): boolean | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== "object" || options === null) throw new ConfigurationError("signOut: options must be an object");
  if (options.revoke !== undefined && typeof options.revoke !== "boolean") {
    throw new ConfigurationError("signOut: `revoke` must be true, false or undefined");
  }
  return options.revoke;
}

/** A resource indicator (RFC 8707 §2): an absolute URI without a fragment; as given (a URL's `href`). */
function checkResource(resource: string | URL): string {
  const text = resource instanceof URL ? resource.href : resource;
  let url: URL | undefined;
  try {
    url = typeof text === "string" ? new URL(text) : undefined;
  } catch {
    url = undefined;
  }
  if (url === undefined || url.hash !== "" || text.includes("#") || text.length > 2048) {
    throw new ConfigurationError(
      "forResource: the resource must be an absolute URI without a fragment (RFC 8707), e.g. https://api.example.com",
    );
  }
  return text;
}

/** The settings a refusal of the configuration is explained with; how the client proves itself, as such a refusal names it. */
function requestSettings(options: TokenManagerOptions, settings: Settings): RequestSettings {
  return {
    issuer: settings.issuer,
    clientId: settings.clientId,
    grant: settings.grant,
    credentials: credentialsKind(options),
    ...(options.scope !== undefined ? { scope: options.scope } : {}),
    ...(options.resource !== undefined ? { resource: options.resource } : {}),
  };
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
  checkFunction(name, "fetch", options.fetch);
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

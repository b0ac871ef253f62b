/**
 * Public types of connect-oidc. See the API contract for their semantics.
 */
import type { DPoPKey, StoredDPoPKey } from "./dpop-key.js";

/**
 * Anything that hands out a valid access token: what the interceptor needs. A
 * {@link TokenManager} is one; so is anything else with `getAccessToken`.
 *
 * @example
 * ```ts
 * import { createAuthInterceptor, type TokenProvider } from "connect-oidc";
 *
 * // A fixed token from the environment, e.g. for a one-off script.
 * const fixed: TokenProvider = {
 *   async getAccessToken() {
 *     const token = process.env.API_TOKEN;
 *     if (!token) throw new Error("API_TOKEN is not set");
 *     return token;
 *   },
 * };
 * const interceptor = createAuthInterceptor(fixed);
 * ```
 */
export interface TokenProvider {
  /**
   * A token that is valid now. `rejected`: the token a server just refused; if it
   * is still the current one, refresh (even if the clock says it is valid); if a
   * newer one exists, return that without a new refresh.
   */
  getAccessToken(options?: { readonly signal?: AbortSignal; readonly rejected?: string }): Promise<string>;
  /**
   * Optional, the fast path: the token `getAccessToken()` would resolve with right now
   * without waiting for anything, or `undefined` when the caller must call
   * `getAccessToken()` (no token at hand, one due for a refresh, a refresh under way, …).
   * Must not throw or do I/O. With it, the interceptor sets the header of a call whose token
   * is at hand without waiting for a promise; a refusal of that token still goes through
   * `getAccessToken({ rejected })`. A provider without it keeps working.
   *
   * @example
   * ```ts
   * import type { TokenProvider } from "connect-oidc";
   *
   * // A token fetched once and kept until an hour has passed or a server refuses it.
   * let kept: { token: string; until: number } | undefined;
   * const cached: TokenProvider = {
   *   current: () => (kept !== undefined && Date.now() < kept.until ? kept.token : undefined),
   *   async getAccessToken(options) {
   *     if (kept === undefined || Date.now() >= kept.until || options?.rejected === kept.token) {
   *       const response = await fetch("https://tokens.example.com/token", { signal: options?.signal ?? null });
   *       kept = { token: await response.text(), until: Date.now() + 3_600_000 };
   *     }
   *     return kept.token;
   *   },
   * };
   * ```
   */
  current?(): string | undefined;
  /**
   * Optional: a server accepted `token` (a call sent with it succeeded). The interceptor
   * calls it after every successful call; a provider uses it to tell a token that a server
   * accepted and later refused (a revocation: replace it at once) from one refused from
   * the start (a server that refuses every token: back off). Must not throw.
   */
  accepted?(token: string): void;
  /**
   * Optional: the tokens are sender-constrained with DPoP (RFC 9449). The interceptor then
   * sends `authorization: DPoP <token>` and, in a `DPoP` header, a fresh proof from
   * `dpop.proof()` for every attempt, and hands every `DPoP-Nonce` a server sends to
   * `dpop.nonce()`. Without it, tokens go out as `Bearer`.
   */
  readonly dpop?: DPoPProver;
}

/**
 * What makes DPoP proofs for a {@link TokenProvider} (its `dpop` member): a token manager
 * created with `dpop` has one. Proofs are signed with the key of the login the access token
 * belongs to, and carry the latest nonce the request's server (its origin) sent.
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 *
 * const tokens = createTokenManager({ issuer, clientId, dpop: true });
 * const accessToken = await tokens.getAccessToken();
 * const url = "https://api.example.com/things";
 * const response = await fetch(url, {
 *   headers: { authorization: `DPoP ${accessToken}`, dpop: await tokens.dpop!.proof({ method: "GET", url, accessToken }) },
 * });
 * const nonce = response.headers.get("dpop-nonce");
 * if (nonce !== null) tokens.dpop!.nonce(url, nonce);
 * ```
 */
export interface DPoPProver {
  /**
   * A new proof (a compact JWS) for one request: `htm` = `method`, `htu` = `url` without
   * query and fragment, `iat` now, a unique `jti`, `ath` of `accessToken`, and the server's
   * latest nonce. Rejects with a `DPoPKeyError` when the login has no usable key (never a
   * bearer fallback).
   */
  proof(request: { readonly method: string; readonly url: string; readonly accessToken: string }): Promise<string>;
  /** A server at `url` sent `DPoP-Nonce: nonce`: the next proofs for its origin carry it. Never throws. */
  nonce(url: string, nonce: string): void;
}

/**
 * What a token endpoint returns (RFC 6749 §5.1), as openid-client hands it over.
 * This is what `setTokens` takes after a login.
 *
 * @example
 * ```ts
 * import * as client from "openid-client";
 *
 * // A login done with openid-client directly (here: a refresh token from elsewhere).
 * const config = await client.discovery(new URL("https://login.example.com"), "my-cli");
 * await tokens.setTokens(await client.refreshTokenGrant(config, refreshToken));
 * ```
 */
export interface TokenEndpointResponse {
  /** Visible ASCII (0x21–0x7E), like every token the package takes: anything else is refused. */
  readonly access_token: string;
  readonly token_type?: string;
  readonly expires_in?: number;
  /** Visible ASCII (0x21–0x7E), like `access_token`. */
  readonly refresh_token?: string;
  readonly scope?: string;
  readonly id_token?: string;
  /**
   * Not from the identity provider: the DPoP key pair a login with `dpop` bound these tokens
   * to (then `token_type` is `"DPoP"`). `setTokens` keeps it with the login.
   */
  readonly dpopKey?: DPoPKey;
  /**
   * Not from the identity provider: who logged in, from the ID token the login validated
   * (openid-client checks its signature, issuer, audience and nonce). The logins add it;
   * `setTokens` keeps it with the login (bounded: strings only, at most 256 characters, no
   * control characters), and also takes it from an openid-client response's `claims()`.
   */
  readonly identity?: LoginIdentity;
  readonly [parameter: string]: unknown;
}

/**
 * Who a login is: the validated ID token's `sub`, and the `name`, `email`,
 * `preferred_username`, `acr` and `auth_time` claims when the provider put them in it. For
 * display only (a `whoami`); never an authorization decision.
 *
 * @example
 * ```ts
 * import type { LoginIdentity } from "connect-oidc";
 *
 * const who = (identity: LoginIdentity | undefined) =>
 *   identity === undefined ? "unknown" : (identity.email ?? identity.preferredUsername ?? identity.subject);
 * ```
 */
export interface LoginIdentity {
  readonly subject: string;
  readonly name?: string;
  readonly email?: string;
  readonly preferredUsername?: string;
  /** The ID token's `acr`: the authentication context class the provider says it met (RFC 9470 step-up). */
  readonly acr?: string;
  /** The ID token's `auth_time`: when the user authenticated, epoch seconds. */
  readonly authTime?: number;
}

/**
 * The persisted form of a login. Small on purpose (no ID token): some keyrings
 * limit a secret to 2,560 bytes.
 *
 * @example
 * ```ts
 * import type { StoredTokens } from "connect-oidc";
 *
 * // What a store holds; a custom store keeps it as it is (here: as JSON text).
 * const text = JSON.stringify(stored satisfies StoredTokens);
 * const back = JSON.parse(text) as StoredTokens;
 * console.log(back.issuer, back.clientId, back.expiresAt && new Date(back.expiresAt));
 * ```
 */
export interface StoredTokens {
  readonly version: 1;
  /** Issuer identifier the tokens came from. */
  readonly issuer: string;
  /** Client the tokens were issued to. */
  readonly clientId: string;
  readonly accessToken?: string;
  readonly refreshToken?: string;
  /** Epoch ms (local clock): when the token request was sent. */
  readonly issuedAt?: number;
  /** Epoch ms (local clock): issuedAt + expires_in. */
  readonly expiresAt?: number;
  /**
   * Epoch ms (local clock): when the refresh token (the login) ends, when the provider said
   * (`refresh_expires_in`, `refresh_token_expires_in`).
   */
  readonly refreshExpiresAt?: number;
  readonly scope?: string;
  /** `"DPoP"`: the tokens are bound to `dpopKey` (RFC 9449); absent: bearer tokens. */
  readonly tokenType?: "DPoP";
  /**
   * The DPoP key the tokens are bound to: as JWKs (the private one included) for stores that
   * serialize, as a CryptoKeyPair with a non-extractable private key for stores that keep
   * objects (`TokenStore.keepsCryptoKeys`, memoryStore).
   */
  readonly dpopKey?: StoredDPoPKey;
  /** Who logged in (the validated ID token's claims, see {@link LoginIdentity}), when the login had an ID token. */
  readonly identity?: LoginIdentity;
  /**
   * Access tokens for other resource servers (RFC 8707), by resource indicator: what
   * `forResource(resource)` hands out, obtained with this login's refresh token. At most 16
   * (the one that expires first makes way); bound to `dpopKey` like the main token when DPoP is on.
   */
  readonly resources?: Readonly<Record<string, ResourceTokens>>;
}

/**
 * An access token a login holds for one resource server (see {@link StoredTokens.resources}).
 *
 * @example
 * ```ts
 * import type { StoredTokens } from "connect-oidc";
 *
 * // When the stored token for the events service expires, if the login holds one.
 * const events = (stored satisfies StoredTokens).resources?.["https://events.example.com"];
 * if (events !== undefined) console.log(new Date(events.expiresAt));
 * ```
 */
export interface ResourceTokens {
  /** Visible ASCII (0x21–0x7E), like every token the package takes. */
  readonly accessToken: string;
  /** Epoch ms (local clock): when the token request was sent. */
  readonly issuedAt: number;
  /** Epoch ms (local clock): issuedAt + expires_in. */
  readonly expiresAt: number;
  /** `"DPoP"`: bound to the login's `dpopKey`; absent: a bearer token. */
  readonly tokenType?: "DPoP";
}

/**
 * Where a login is kept. Stores know nothing of OIDC or Connect. Implement `lock` to let
 * processes that share the store refresh the login one at a time.
 *
 * @example
 * ```ts
 * import { createTokenManager, type StoredTokens, type TokenStore } from "connect-oidc";
 *
 * // A store in the browser's sessionStorage (one tab; no lock needed).
 * const key = "my-app-login";
 * const sessionStore: TokenStore = {
 *   async load() {
 *     const text = sessionStorage.getItem(key);
 *     return text === null ? undefined : (JSON.parse(text) as StoredTokens);
 *   },
 *   async save(tokens) {
 *     sessionStorage.setItem(key, JSON.stringify(tokens));
 *   },
 *   async clear() {
 *     sessionStorage.removeItem(key);
 *   },
 * };
 * const tokens = createTokenManager({ issuer, clientId, store: sessionStore });
 * ```
 */
export interface TokenStore {
  load(): Promise<StoredTokens | undefined>;
  save(tokens: StoredTokens): Promise<void>;
  clear(): Promise<void>;
  /**
   * Cross-process mutual exclusion around a whole refresh. A caller that waits should give
   * up when `signal` aborts (rejecting with its reason) and after a timeout of the store's
   * (TokenStoreError "lock-timeout"). A store whose lock can be lost while held (a lease)
   * may pass `fn` a {@link LockHold}: the manager confirms it right before it asks the
   * identity provider.
   */
  lock?<T>(fn: (hold?: LockHold) => Promise<T>, signal?: AbortSignal): Promise<T>;
  /**
   * The store keeps what `save` gets as it is, in this process (memoryStore does): a DPoP
   * key is then handed over as a CryptoKeyPair whose private key cannot be exported.
   * Default false: as JWKs, for stores that serialize (JSON, a file, a keyring).
   */
  readonly keepsCryptoKeys?: boolean;
}

/**
 * What a store's `lock` may hand to `fn` when its lock can be lost while held (redisStore's
 * lease runs out if its holder stalls): a way to make sure, right before a step that must
 * not overlap another holder's, that the lock is still this caller's.
 *
 * @example
 * ```ts
 * import type { LockHold, TokenStore } from "connect-oidc";
 *
 * async function refreshUnder(store: TokenStore, send: () => Promise<void>): Promise<void> {
 *   await store.lock!(async (hold?: LockHold) => {
 *     await hold?.confirm(); // throws if another holder has the lock now
 *     await send();
 *   });
 * }
 * ```
 */
export interface LockHold {
  /**
   * Resolves if this caller still holds the lock (a lease is renewed for its full length);
   * rejects with TokenStoreError "fenced" if it was lost (another holder has it, or wrote
   * since this caller read), or with the store's error when it cannot tell.
   */
  confirm(): Promise<void>;
}

/**
 * Why a token was refreshed (the `refreshed` event): `proactive` before expiry in the
 * background, `expired` when a call found it expired, `rejected` after a server refused it,
 * `startup` the first refresh of a login the manager loaded from its store at start.
 *
 * @example
 * ```ts
 * import type { RefreshReason } from "connect-oidc";
 *
 * const counts: Record<RefreshReason, number> = { proactive: 0, expired: 0, rejected: 0, startup: 0 };
 * const onEvent = (e: TokenEvent) => e.type === "refreshed" && counts[e.reason]++;
 * ```
 */
export type RefreshReason = "proactive" | "expired" | "rejected" | "startup";

/**
 * One refresh, as told by the event that ends it (`refresh` on `refreshed`, `adopted`,
 * `refresh-failed` or `reauth-required`): why it ran, with which grant, and how long it took
 * on the monotonic clock (from its start to the event, the store's lock and the identity
 * provider's answer included). What connect-oidc/otel's spans and duration histogram are made of.
 *
 * @example
 * ```ts
 * import { createTokenManager, type TokenEvent } from "connect-oidc";
 *
 * const onEvent = (event: TokenEvent) => {
 *   if ("refresh" in event && event.refresh !== undefined) {
 *     const { reason, grant, durationMs } = event.refresh;
 *     console.error(`${grant} refresh (${reason}) ended in ${event.type} after ${durationMs.toFixed(0)} ms`);
 *   }
 * };
 * const tokens = createTokenManager({ issuer, clientId, onEvent });
 * ```
 */
export interface RefreshAttempt {
  readonly reason: RefreshReason;
  readonly grant: "refresh_token" | "client_credentials";
  /** Milliseconds on the monotonic clock (`Clock.monotonic`). */
  readonly durationMs: number;
}

/**
 * What the token manager tells `onEvent`. Never contains token material.
 *
 * @example
 * ```ts
 * import { createTokenManager, type TokenEvent } from "connect-oidc";
 *
 * function onEvent(event: TokenEvent): void {
 *   switch (event.type) {
 *     case "refreshed":
 *       console.error(`✓ Token refreshed (${event.reason}, expires ${new Date(event.expiresAt).toLocaleTimeString()})`);
 *       break;
 *     case "refresh-failed":
 *       if (!event.terminal) console.error(`Refresh failed, retrying: ${event.error.message}`);
 *       break;
 *     case "reauth-required":
 *       console.error("Logged out: run `my-cli login`.");
 *       break;
 *     case "misconfigured":
 *       console.error(`Check the configuration: ${event.error.message}`);
 *       break;
 *     case "login-expiring":
 *       console.error(`Your login ends at ${new Date(event.expiresAt).toLocaleString()}: log in again soon.`);
 *       break;
 *   }
 * }
 * const tokens = createTokenManager({ issuer, clientId, onEvent });
 * ```
 */
export type TokenEvent =
  /** `resource`: the token refreshed (or adopted) is the one for that resource server (`forResource`). */
  | {
      readonly type: "refreshed";
      readonly reason: RefreshReason;
      readonly expiresAt: number;
      readonly refresh?: RefreshAttempt;
      readonly resource?: string;
    }
  /** Another process's newer login, taken from the store (`refresh`: by a refresh, which then asked no identity provider). */
  | { readonly type: "adopted"; readonly expiresAt: number; readonly refresh?: RefreshAttempt; readonly resource?: string }
  | {
      readonly type: "refresh-failed";
      readonly error: Error;
      readonly retryAt?: number;
      readonly terminal: boolean;
      /** Not terminal: when the access token still in use expires (epoch ms), if one is held. */
      readonly expiresAt?: number;
      /** Present when this failure ended a refresh (absent for a store that could not save refreshed tokens). */
      readonly refresh?: RefreshAttempt;
    }
  /** `refresh`: present when a refresh that found no way to go on (no refresh token) ended here. */
  | { readonly type: "reauth-required"; readonly error: Error; readonly refresh?: RefreshAttempt }
  /**
   * The identity provider refused this configuration (issuer, client id, secret, scope,
   * grant) before it ever worked in this process: fix the options. Once; every call then
   * fails with `error` (a `ProviderConfigurationError`, or a `ClientAssertionError` for a
   * client assertion that cannot be used) without asking the provider.
   */
  | { readonly type: "misconfigured"; readonly error: Error; readonly refresh?: RefreshAttempt }
  /**
   * The login ends at `expiresAt` (the provider's refresh-token lifetime) and that is now
   * less than `loginExpiringMs` away: ask the user to log in again at a good moment. Once
   * per login and process; `reauth-required` stays the hard stop.
   */
  | { readonly type: "login-expiring"; readonly expiresAt: number };

/**
 * Time, injected so tests can drive hours of token lifetimes in milliseconds.
 *
 * @example
 * ```ts
 * import { type Clock, createTokenManager } from "connect-oidc";
 *
 * // The system clock, spelled out; a test passes a manual one it can move forward.
 * const clock: Clock = {
 *   now: () => Date.now(),
 *   monotonic: () => performance.now(),
 *   setTimeout: (fn, ms) => setTimeout(fn, ms),
 *   clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
 * };
 * const tokens = createTokenManager({ issuer, clientId, clock });
 * ```
 */
export interface Clock {
  /** Wall clock, epoch ms: only for what is persisted or compared across processes (expiry). */
  now(): number;
  /**
   * Monotonic ms (never steps back or jumps with NTP): intervals, backoff, timeouts.
   * Default: `now()` for a clock without one; the system clock uses `performance.now()`.
   */
  monotonic?(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * Your own `fetch` for every request to the identity provider (discovery, token, device
 * authorization, revocation): openid-client's `customFetch`. The global `fetch` has this
 * shape; give one that goes through a proxy, trusts a private CA, presents a client
 * certificate (mTLS) or records each request.
 *
 * @example
 * ```ts
 * import { createTokenManager, type CustomFetch } from "connect-oidc";
 *
 * // Instrumentation: count the identity provider's requests, then send them as usual.
 * let requests = 0;
 * const counting: CustomFetch = (url, init) => {
 *   requests += 1;
 *   return fetch(url, init);
 * };
 * const tokens = createTokenManager({ issuer: "https://login.example.com", clientId: "my-cli", fetch: counting });
 * ```
 */
export type CustomFetch = (url: string, init: RequestInit) => Promise<Response>;

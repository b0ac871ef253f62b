/**
 * Public types of connect-oidc. See the API contract for their semantics.
 */

/** Anything that hands out a valid access token: what the interceptor needs. */
export interface TokenProvider {
  /**
   * A token that is valid now. `rejected`: the token a server just refused; if it
   * is still the current one, refresh (even if the clock says it is valid); if a
   * newer one exists, return that without a new refresh.
   */
  getAccessToken(options?: { readonly signal?: AbortSignal; readonly rejected?: string }): Promise<string>;
  /**
   * Optional: a server accepted `token` (a call sent with it succeeded). The interceptor
   * calls it after every successful call; a provider uses it to tell a token that a server
   * accepted and later refused (a revocation: replace it at once) from one refused from
   * the start (a server that refuses every token: back off). Must not throw.
   */
  accepted?(token: string): void;
}

/**
 * What a token endpoint returns (RFC 6749 §5.1), as openid-client hands it over.
 * This is what `setTokens` takes after a login.
 */
export interface TokenEndpointResponse {
  readonly access_token: string;
  readonly token_type?: string;
  readonly expires_in?: number;
  readonly refresh_token?: string;
  readonly scope?: string;
  readonly id_token?: string;
  readonly [parameter: string]: unknown;
}

/**
 * The persisted form of a login. Small on purpose (no ID token): some keyrings
 * limit a secret to 2,560 bytes.
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
  /**
   * What a refresh needs of the identity provider's discovery document, kept with the login
   * so that a fresh process refreshes with one request instead of two: `metadata` holds
   * only the fields openid-client reads for a token request (RFC 8414 names), `fetchedAt`
   * (epoch ms, wall clock) when it was fetched. Used while younger than 24 h.
   */
  readonly discovery?: {
    readonly fetchedAt: number;
    readonly metadata: {
      readonly issuer: string;
      readonly token_endpoint: string;
      readonly token_endpoint_auth_methods_supported?: readonly string[];
      readonly id_token_signing_alg_values_supported?: readonly string[];
    };
  };
}

/** Where a login is kept. Stores know nothing of OIDC or Connect. */
export interface TokenStore {
  load(): Promise<StoredTokens | undefined>;
  save(tokens: StoredTokens): Promise<void>;
  clear(): Promise<void>;
  /** Cross-process mutual exclusion around a whole refresh. */
  lock?<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

export type RefreshReason = "proactive" | "expired" | "rejected" | "startup";

export type TokenEvent =
  | { readonly type: "refreshed"; readonly reason: RefreshReason; readonly expiresAt: number }
  | { readonly type: "adopted"; readonly expiresAt: number }
  | {
      readonly type: "refresh-failed";
      readonly error: Error;
      readonly retryAt?: number;
      readonly terminal: boolean;
    }
  | { readonly type: "reauth-required"; readonly error: Error }
  /**
   * The login ends at `expiresAt` (the provider's refresh-token lifetime) and that is now
   * less than `loginExpiringMs` away: ask the user to log in again at a good moment. Once
   * per login and process; `reauth-required` stays the hard stop.
   */
  | { readonly type: "login-expiring"; readonly expiresAt: number };

/** Time, injected so tests can drive hours of token lifetimes in milliseconds. */
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

/**
 * Error classes with a stable `code`, on the class and the instance, `cause`
 * preserved. Messages and causes never contain token material.
 */

/**
 * Every `code` a connect-oidc error can carry: `switch (err.code)` narrows.
 *
 * @example
 * ```ts
 * import { ConnectOidcError } from "connect-oidc";
 *
 * function explain(error: unknown): string {
 *   if (!(error instanceof ConnectOidcError)) return "unexpected error";
 *   switch (error.code) {
 *     case "ERR_REAUTH_REQUIRED":
 *       return "log in again";
 *     case "ERR_TOKEN_REFRESH":
 *       return "the identity provider is unreachable; retrying";
 *     default:
 *       return error.message;
 *   }
 * }
 * ```
 */
export type ConnectOidcErrorCode =
  | "ERR_CONNECT_OIDC"
  | "ERR_REAUTH_REQUIRED"
  | "ERR_TOKEN_REFRESH"
  | "ERR_TOKEN_STORE"
  | "ERR_LOGIN"
  | "ERR_CONFIGURATION"
  | "ERR_PROVIDER_CONFIGURATION"
  | "ERR_CLIENT_ASSERTION"
  | "ERR_MANAGER_CLOSED";

/**
 * The base class of every error connect-oidc throws, with a stable `code` on the class and
 * the instance and `cause` preserved. Messages and causes never contain token material.
 *
 * @example
 * ```ts
 * import { ConnectOidcError, ReauthRequiredError } from "connect-oidc";
 *
 * try {
 *   await tokens.getAccessToken();
 * } catch (error) {
 *   if (error instanceof ReauthRequiredError) console.error("Please log in again.");
 *   else if (error instanceof ConnectOidcError) console.error(`${error.code}: ${error.message}`);
 *   else throw error;
 * }
 * ```
 */
export class ConnectOidcError extends Error {
  static readonly code: ConnectOidcErrorCode = "ERR_CONNECT_OIDC";
  readonly code: ConnectOidcErrorCode = "ERR_CONNECT_OIDC";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = this.constructor.name;
  }
}

/**
 * The login is gone (no tokens, or a dead refresh token): log in again. Calls through the
 * interceptor fail with `Code.Unauthenticated` and this error as `cause`.
 *
 * @example
 * ```ts
 * import { ConnectError } from "@connectrpc/connect";
 * import { ReauthRequiredError } from "connect-oidc";
 * import { loginWithBrowser } from "connect-oidc/node";
 *
 * try {
 *   await client.heartbeat({});
 * } catch (error) {
 *   if (ConnectError.from(error).cause instanceof ReauthRequiredError) {
 *     await tokens.setTokens(await loginWithBrowser({ issuer, clientId }));
 *   }
 * }
 * ```
 */
export class ReauthRequiredError extends ConnectOidcError {
  static override readonly code = "ERR_REAUTH_REQUIRED";
  override readonly code = "ERR_REAUTH_REQUIRED";
}

/**
 * A refresh failed for a reason that may pass (network, timeout, 5xx, 429) and no valid
 * token is left; the manager keeps retrying in the background.
 *
 * @example
 * ```ts
 * import { TokenRefreshError } from "connect-oidc";
 *
 * try {
 *   await tokens.getAccessToken();
 * } catch (error) {
 *   if (error instanceof TokenRefreshError && error.retryAt !== undefined) {
 *     console.error(`Identity provider unreachable; next try at ${new Date(error.retryAt).toLocaleTimeString()}`);
 *   }
 * }
 * ```
 */
export class TokenRefreshError extends ConnectOidcError {
  static override readonly code = "ERR_TOKEN_REFRESH";
  override readonly code = "ERR_TOKEN_REFRESH";
  /** Epoch ms (wall clock) of the next scheduled attempt, when one is scheduled. */
  readonly retryAt?: number;
  constructor(message: string, options?: { cause?: unknown; retryAt?: number }) {
    super(message, options);
    if (options?.retryAt !== undefined) this.retryAt = options.retryAt;
  }
}

/**
 * Why a token store failed: `switch (err.reason)` narrows.
 *
 * @example
 * ```ts
 * import { TokenStoreError } from "connect-oidc";
 *
 * function hint(error: TokenStoreError): string {
 *   switch (error.reason) {
 *     case "locked":
 *       return "unlock your keyring and retry";
 *     case "no-keyring":
 *       return "no OS keyring here: pass --store file:<path>";
 *     default:
 *       return error.message;
 *   }
 * }
 * ```
 */
export type TokenStoreErrorReason =
  /** The keyring is locked (its unlock prompt was dismissed or cannot be shown). */
  | "locked"
  /** No keyring service answers (no D-Bus session, no Secret Service, no kernel keyring). */
  | "no-keyring"
  /** Another keyring failure, named in the message. */
  | "keyring-error"
  /** The stored login cannot be read as one (not JSON, wrong format version, bad field). */
  | "corrupt"
  /** The login is larger than the store can hold. */
  | "too-large"
  /** A file or folder cannot be read, written or created. */
  | "io"
  /** Waiting for another process's lock took longer than the lock's timeout. */
  | "lock-timeout"
  /**
   * The lock was taken over or removed while held. Reported through
   * `FileLockOptions.onCompromised`; the work done under it stands (see docs/LOCKING.md).
   */
  | "lock-compromised"
  /** The lock's folder is owned by another user or open to others: it is not used. */
  | "unsafe-folder"
  /** The token file or lock at the store's path is not this user's alone (another owner, a link, open to others): it is not used. */
  | "unsafe-file"
  /** The store's server (Redis) did not answer in time or refused the command. */
  | "unavailable"
  /**
   * A write refused because a newer login was stored after this process read the store
   * (its lease had run out meanwhile), or the read that starts a refresh refused because
   * another process holds the lease now; the newer login stands.
   */
  | "fenced";

/**
 * A token store cannot be read or written; the message names the cause and the fix, and
 * `reason` says which it is. A locked or unreachable keyring is this error, never "no login".
 *
 * @example
 * ```ts
 * import { TokenStoreError } from "connect-oidc";
 *
 * try {
 *   await tokens.getAccessToken();
 * } catch (error) {
 *   if (error instanceof TokenStoreError && error.reason === "locked") {
 *     console.error("Your keyring is locked: unlock it and run this again.");
 *   }
 * }
 * ```
 */
export class TokenStoreError extends ConnectOidcError {
  static override readonly code = "ERR_TOKEN_STORE";
  override readonly code = "ERR_TOKEN_STORE";
  readonly reason: TokenStoreErrorReason;
  constructor(reason: TokenStoreErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/**
 * A login flow failed (denied, expired, state mismatch, timeout). Its `cause` is a
 * token-free summary of the identity provider's answer.
 *
 * @example
 * ```ts
 * import { LoginError } from "connect-oidc";
 * import { loginWithBrowser } from "connect-oidc/node";
 *
 * try {
 *   await tokens.setTokens(await loginWithBrowser({ issuer, clientId }));
 * } catch (error) {
 *   if (error instanceof LoginError) console.error(`Login failed: ${error.message}`);
 *   else throw error;
 * }
 * ```
 */
export class LoginError extends ConnectOidcError {
  static override readonly code = "ERR_LOGIN";
  override readonly code = "ERR_LOGIN";
}

/**
 * Fix the configuration: options that cannot work (bad issuer URL, missing client id, ...),
 * thrown at once by the factory or function that got them, and — as its subclass
 * {@link ProviderConfigurationError} — options the identity provider refuses. Neither
 * passes by waiting or by logging in again; the message names the option to change.
 *
 * @example
 * ```ts
 * import { ConfigurationError, createTokenManager } from "connect-oidc";
 *
 * try {
 *   createTokenManager({ issuer: process.env.OIDC_ISSUER ?? "", clientId: "my-cli" });
 * } catch (error) {
 *   if (error instanceof ConfigurationError) console.error(error.message); // names the option and the fix
 * }
 * ```
 */
export class ConfigurationError extends ConnectOidcError {
  static override readonly code: ConfigurationErrorCode = "ERR_CONFIGURATION";
  override readonly code: ConfigurationErrorCode = "ERR_CONFIGURATION";
}

/**
 * The codes of the {@link ConfigurationError} family: `switch (err.code)` narrows.
 *
 * @example
 * ```ts
 * import { ConfigurationError } from "connect-oidc";
 *
 * function fixHint(error: ConfigurationError): string {
 *   switch (error.code) {
 *     case "ERR_PROVIDER_CONFIGURATION":
 *       return "the identity provider refused these options: " + error.message;
 *     case "ERR_CLIENT_ASSERTION":
 *       return "the client assertion (its token file) cannot be used: " + error.message;
 *     case "ERR_CONFIGURATION":
 *       return error.message; // names the option and the fix
 *   }
 * }
 * ```
 */
export type ConfigurationErrorCode = "ERR_CONFIGURATION" | "ERR_PROVIDER_CONFIGURATION" | "ERR_CLIENT_ASSERTION";

/**
 * Which option the identity provider's answer shows to be wrong: `switch (err.reason)` narrows.
 *
 * @example
 * ```ts
 * import type { ProviderConfigurationErrorReason } from "connect-oidc";
 *
 * const option: Record<ProviderConfigurationErrorReason, string> = {
 *   issuer: "issuer",
 *   "issuer-mismatch": "issuer",
 *   "token-endpoint": "issuer",
 *   insecure: "allowInsecureRequests",
 *   client: "clientId / clientSecret / clientAuthentication",
 *   grant: "grant",
 *   scope: "scope",
 *   resource: "resource",
 *   dpop: "dpop (or DPoP at the provider)",
 * };
 * ```
 */
export type ProviderConfigurationErrorReason =
  /** No discovery document at the issuer (404 or another refusal, or not a discovery document). */
  | "issuer"
  /** The discovery document names another issuer (an alias such as `localhost` for `127.0.0.1`). */
  | "issuer-mismatch"
  /** The token endpoint the provider names answers 404/405. */
  | "token-endpoint"
  /** The provider names an http:// endpoint and `allowInsecureRequests` is not set. */
  | "insecure"
  /** The provider refused the client (`invalid_client`, any 401): unknown client id, wrong secret or key. */
  | "client"
  /** The client may not use this grant (`unauthorized_client`, `unsupported_grant_type`, `invalid_request`, or `invalid_grant` to client credentials). */
  | "grant"
  /** The client may not have the requested scope (`invalid_scope`). */
  | "scope"
  /** The requested resource is unknown to the provider (`invalid_target`). */
  | "resource"
  /** The manager has `dpop`, but the provider answers this client's token requests with bearer tokens. */
  | "dpop";

/**
 * The identity provider refused this configuration (a wrong issuer path, an issuer alias,
 * an unknown client id, a wrong secret, a scope or grant the client may not have) before it
 * ever worked in this process. A {@link ConfigurationError} (`instanceof` holds) with its
 * own code and a `reason`; the message names what was tried and the option to change. The
 * token manager raises it once (event `misconfigured`), then fails every call with it
 * without asking the provider again, until `setTokens`. Once the configuration has worked
 * in this process, the same answer is taken to pass (a provider's deploy) and retried with
 * backoff as a `TokenRefreshError` whose `cause` is this error.
 *
 * @example
 * ```ts
 * import { ProviderConfigurationError } from "connect-oidc";
 *
 * try {
 *   await tokens.getAccessToken();
 * } catch (error) {
 *   if (error instanceof ProviderConfigurationError) {
 *     console.error(`Fix the configuration (${error.reason}): ${error.message}`);
 *     process.exitCode = 78; // EX_CONFIG
 *   }
 * }
 * ```
 */
export class ProviderConfigurationError extends ConfigurationError {
  static override readonly code: ConfigurationErrorCode = "ERR_PROVIDER_CONFIGURATION";
  override readonly code: ConfigurationErrorCode = "ERR_PROVIDER_CONFIGURATION";
  readonly reason: ProviderConfigurationErrorReason;
  constructor(reason: ProviderConfigurationErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/**
 * The token manager was closed (`close()` or `[Symbol.dispose]`): it hands out no more tokens.
 *
 * @example
 * ```ts
 * import { TokenManagerClosedError } from "connect-oidc";
 *
 * tokens.close();
 * await tokens.getAccessToken().catch((error) => {
 *   console.log(error instanceof TokenManagerClosedError); // true
 * });
 * ```
 */
export class TokenManagerClosedError extends ConnectOidcError {
  static override readonly code = "ERR_MANAGER_CLOSED";
  override readonly code = "ERR_MANAGER_CLOSED";
}

/**
 * A token-free stand-in for a third-party error (openid-client's errors may carry the
 * identity provider's whole response body, tokens included, in their `cause` chain).
 * Keeps only what helps diagnose: the HTTP status, the OAuth error code and the
 * library's own error code.
 */
export class ExchangeFailure extends Error {
  readonly status?: number;
  readonly error?: string;
  readonly code?: string;
  constructor(message: string, facts: { status?: number; error?: string; code?: string }) {
    super(message);
    this.name = "ExchangeFailure";
    if (facts.status !== undefined) this.status = facts.status;
    if (facts.error !== undefined) this.error = facts.error;
    if (facts.code !== undefined) this.code = facts.code;
  }
}

/**
 * Why a login cannot be used with DPoP: `switch (err.reason)` narrows.
 *
 * @example
 * ```ts
 * import { DPoPKeyError, type DPoPKeyErrorReason } from "connect-oidc";
 *
 * const hints: Record<DPoPKeyErrorReason, string> = {
 *   missing: "the store lost the login's key: log in again",
 *   unusable: "the stored key cannot be used: log in again",
 *   "not-bound": "this login was made without dpop: log in again with dpop",
 *   unexpected: "this login is DPoP-bound: create the token manager with dpop",
 *   "bearer-refresh": "the provider stopped binding tokens: check DPoP at the provider, log in again",
 * };
 * ```
 */
export type DPoPKeyErrorReason =
  /** The login's tokens are DPoP-bound, but the store holds no key for them. */
  | "missing"
  /** The stored key cannot be imported or used to sign. */
  | "unusable"
  /** The manager uses DPoP, but the login's tokens are bearer tokens. */
  | "not-bound"
  /** The login's tokens are DPoP-bound, but the manager was created without `dpop`. */
  | "unexpected"
  /** The identity provider answered the login's DPoP refreshes with bearer tokens, twice in a row. */
  | "bearer-refresh";

/**
 * A login that cannot be used as it is with DPoP (RFC 9449): its key is missing or
 * unusable, or its binding does not match the manager's `dpop` option. Never answered by
 * sending the token as a bearer token. A kind of {@link ReauthRequiredError} (a new login
 * helps), with `reason` saying which case it is.
 *
 * @example
 * ```ts
 * import { DPoPKeyError } from "connect-oidc";
 *
 * try {
 *   await tokens.getAccessToken();
 * } catch (error) {
 *   if (error instanceof DPoPKeyError) console.error(`DPoP: ${error.reason}: ${error.message}`);
 * }
 * ```
 */
export class DPoPKeyError extends ReauthRequiredError {
  readonly reason: DPoPKeyErrorReason;
  constructor(reason: DPoPKeyErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/**
 * Why a client assertion cannot be used: `switch (err.reason)` narrows.
 *
 * @example
 * ```ts
 * import type { ClientAssertionErrorReason } from "connect-oidc";
 *
 * const hints: Record<ClientAssertionErrorReason, string> = {
 *   missing: "mount the projected service-account token at that path",
 *   unsafe: "the path must be a regular file others cannot write",
 *   "too-large": "the path holds something larger than a token",
 *   unreadable: "give this process read access to the file",
 *   malformed: "the file (or function) must give one JWT",
 * };
 * ```
 */
export type ClientAssertionErrorReason =
  /** No file at the path (or a folder on the way is missing). */
  | "missing"
  /** Not a regular file (a folder, a FIFO, a device), or writable by other users. */
  | "unsafe"
  /** Larger than a token file can be (64 KiB). */
  | "too-large"
  /** The file exists but this process may not read it, or reading failed. */
  | "unreadable"
  /** Empty, or not a JWT (three base64url parts); a `clientAssertion` that returned no string. */
  | "malformed";

/**
 * The client assertion (`clientAssertion`, e.g. `clientAssertionFromFile`) cannot be used:
 * a token file missing, unsafe, too large or unreadable, or no JWT in it. A
 * {@link ConfigurationError} (`instanceof` holds) with its own code and a `reason`; the
 * message names the path and the fix, never the file's content. A token manager treats it
 * as it treats a {@link ProviderConfigurationError}: final while the settings never worked
 * in this process, retried with backoff once they have.
 *
 * @example
 * ```ts
 * import { ClientAssertionError } from "connect-oidc";
 *
 * try {
 *   await tokens.getAccessToken();
 * } catch (error) {
 *   if (error instanceof ClientAssertionError) {
 *     console.error(`Workload identity (${error.reason}): ${error.message}`);
 *     process.exitCode = 78; // EX_CONFIG
 *   }
 * }
 * ```
 */
export class ClientAssertionError extends ConfigurationError {
  static override readonly code: ConfigurationErrorCode = "ERR_CLIENT_ASSERTION";
  override readonly code: ConfigurationErrorCode = "ERR_CLIENT_ASSERTION";
  readonly reason: ClientAssertionErrorReason;
  constructor(reason: ClientAssertionErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

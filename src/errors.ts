/**
 * The public errors and the messages built for them. Each family is one thing a caller does
 * next — log in again, fix the configuration, wait, retry the login — with its `code` on the
 * class and the instance (a literal: `switch (err.code)` narrows) and `cause` kept; no
 * message or cause holds token material. A family shares one `@example`, on its head
 * class; its members name the head with `@family` (scripts/typedoc-examples.mjs). Internal
 * failure types live where they are made (`ExchangeFailure`: failure.ts).
 */

// The root, and the error of a closed manager.

/**
 * Every `code` a connect-oidc error can carry: `switch (err.code)` narrows.
 *
 * @family {@link ConnectOidcError}
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
  | "ERR_MANAGER_CLOSED"
  | "ERR_REVOCATION"
  | "ERR_STEP_UP_REQUIRED"
  | "ERR_INSUFFICIENT_SCOPE";

/**
 * The base class of every error connect-oidc throws, with a stable `code` on the class and
 * the instance and `cause` preserved. Messages and causes never contain token material.
 *
 * @example
 * ```ts
 * import { ConnectOidcError } from "connect-oidc";
 *
 * try {
 *   await tokens.getAccessToken();
 * } catch (error) {
 *   if (!(error instanceof ConnectOidcError)) throw error;
 *   switch (error.code) {
 *     case "ERR_REAUTH_REQUIRED":
 *       console.error("Please log in again.");
 *       break;
 *     case "ERR_TOKEN_REFRESH":
 *       console.error("The identity provider is unreachable; retrying.");
 *       break;
 *     case "ERR_MANAGER_CLOSED":
 *       break; // shutting down
 *     default:
 *       console.error(`${error.code}: ${error.message}`);
 *   }
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
 * The token manager was closed (`close()` or `[Symbol.dispose]`): it hands out no more tokens.
 *
 * @family {@link ConnectOidcError}
 */
export class TokenManagerClosedError extends ConnectOidcError {
  static override readonly code = "ERR_MANAGER_CLOSED";
  override readonly code = "ERR_MANAGER_CLOSED";
}

/** @internal Every call to a closed token manager. */
export function closedError(): TokenManagerClosedError {
  return new TokenManagerClosedError("The token manager was closed (close() or dispose): create a new one");
}

// Log in again.

/**
 * The login is gone (no tokens, or a dead refresh token): log in again. Calls through the
 * interceptor fail with `Code.Unauthenticated` and this error as `cause`. A
 * {@link DPoPKeyError} is one too, with a `reason`.
 *
 * @example
 * ```ts
 * import { ConnectError } from "@connectrpc/connect";
 * import { DPoPKeyError, ReauthRequiredError } from "connect-oidc";
 * import { loginWithBrowser } from "connect-oidc/node";
 *
 * try {
 *   await client.heartbeat({});
 * } catch (error) {
 *   const cause = ConnectError.from(error).cause;
 *   if (cause instanceof ReauthRequiredError) {
 *     if (cause instanceof DPoPKeyError) console.error(`DPoP (${cause.reason}): ${cause.message}`);
 *     await tokens.setTokens(await loginWithBrowser({ issuer, clientId }));
 *   }
 * }
 * ```
 */
export class ReauthRequiredError extends ConnectOidcError {
  static override readonly code = "ERR_REAUTH_REQUIRED";
  override readonly code = "ERR_REAUTH_REQUIRED";
}

/** @internal The manager's store holds no login. */
export function noLogin(settings: { readonly clientId: string; readonly issuer: string }): ReauthRequiredError {
  return new ReauthRequiredError(
    `No login found for client "${settings.clientId}" at ${settings.issuer}: log in (loginWithBrowser or loginWithDeviceCode) and pass the result to setTokens()`,
  );
}

/** @internal The stored login cannot be refreshed. */
export function noRefreshToken(settings: { readonly clientId: string; readonly issuer: string }): ReauthRequiredError {
  return new ReauthRequiredError(
    `The login of client "${settings.clientId}" at ${settings.issuer} has no usable refresh token (the identity provider refused it, or never issued one): log in again and pass the result to setTokens()`,
  );
}

/**
 * Why a login cannot be used with DPoP: `switch (err.reason)` narrows.
 *
 * @family {@link ReauthRequiredError}
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
 * @family {@link ReauthRequiredError}
 */
export class DPoPKeyError extends ReauthRequiredError {
  readonly reason: DPoPKeyErrorReason;
  constructor(reason: DPoPKeyErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

// Wait: the manager retries.

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

// The server wants more than this login has: a stronger login, or more scope.

/**
 * A server refused a call with an RFC 9470 step-up challenge (`WWW-Authenticate: Bearer
 * error="insufficient_user_authentication"`, or the `DPoP` scheme's): the login is fine,
 * but not strong or recent enough for this method. Calls through the interceptor fail at
 * once with `Code.Unauthenticated` and this error as `cause` — no refresh, no retry, and
 * the token stays in use for other calls. Log in again with `loginWithBrowser({ acrValues,
 * maxAge })` and pass the result to `setTokens()`.
 *
 * @example
 * ```ts
 * import { ConnectError } from "@connectrpc/connect";
 * import { StepUpRequiredError } from "connect-oidc";
 * import { loginWithBrowser } from "connect-oidc/node";
 *
 * try {
 *   await client.heartbeat({});
 * } catch (error) {
 *   const cause = ConnectError.from(error).cause;
 *   if (!(cause instanceof StepUpRequiredError)) throw error;
 *   const { acrValues, maxAge } = cause;
 *   await tokens.setTokens(await loginWithBrowser({ issuer, clientId, acrValues, maxAge }));
 * }
 * ```
 */
export class StepUpRequiredError extends ConnectOidcError {
  static override readonly code = "ERR_STEP_UP_REQUIRED";
  override readonly code = "ERR_STEP_UP_REQUIRED";
  /** The server's `acr_values`, space-separated, when it named any. */
  readonly acrValues?: string;
  /** The server's `max_age` in seconds, when it named one. */
  readonly maxAge?: number;
  constructor(message: string, options?: { cause?: unknown; acrValues?: string | undefined; maxAge?: number | undefined }) {
    super(message, options);
    if (options?.acrValues !== undefined) this.acrValues = options.acrValues;
    if (options?.maxAge !== undefined) this.maxAge = options.maxAge;
  }
}

/**
 * A server refused a call with `error="insufficient_scope"` (RFC 6750 §3.1): the token
 * lacks a scope the method needs; `scope` is what the server named. The call fails at
 * once with the server's code (usually `PermissionDenied`) and this error as `cause` — no
 * refresh (a new token of the same login has the same scope), no retry. Log in with the
 * scope (`scope` option) or ask for access.
 *
 * @example
 * ```ts
 * import { ConnectError } from "@connectrpc/connect";
 * import { InsufficientScopeError } from "connect-oidc";
 *
 * try {
 *   await client.deleteProject({ name });
 * } catch (error) {
 *   const cause = ConnectError.from(error).cause;
 *   if (!(cause instanceof InsufficientScopeError)) throw error;
 *   console.error(`This needs the scope "${cause.scope ?? "?"}": log in with --scope "${cause.scope ?? ""}".`);
 * }
 * ```
 */
export class InsufficientScopeError extends ConnectOidcError {
  static override readonly code = "ERR_INSUFFICIENT_SCOPE";
  override readonly code = "ERR_INSUFFICIENT_SCOPE";
  /** The scopes the server named (`scope="…"`), space-separated, when it named any. */
  readonly scope?: string;
  constructor(message: string, options?: { cause?: unknown; scope?: string | undefined }) {
    super(message, options);
    if (options?.scope !== undefined) this.scope = options.scope;
  }
}

// Signed out here, but maybe not at the provider: what `signOut()` reports, never throws.

/**
 * Why `signOut()` could not revoke the login at the identity provider (RFC 7009): its
 * `reason` says whether the provider offers no revocation (`unsupported`) or the request
 * failed (`failed`: the provider refused it or did not answer; `cause` is a token-free
 * summary). The login is cleared from the store all the same; the provider may keep it
 * until it expires — the user can end it in the provider's account page.
 *
 * @example
 * ```ts
 * const result = await tokens.signOut(); // revokes when the provider can, then clears the store
 * if (result.error !== undefined) console.error(`Signed out here, but: ${result.error.message}`);
 * ```
 */
export class RevocationError extends ConnectOidcError {
  static override readonly code = "ERR_REVOCATION";
  override readonly code = "ERR_REVOCATION";
  readonly reason: "unsupported" | "failed";
  constructor(reason: "unsupported" | "failed", message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

// The store: unlock it, fix it or wait, as `reason` says.

/**
 * Why a token store failed: `switch (err.reason)` narrows.
 *
 * @family {@link TokenStoreError}
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
 *   if (!(error instanceof TokenStoreError)) throw error;
 *   switch (error.reason) {
 *     case "locked":
 *       console.error("Your keyring is locked: unlock it and run this again.");
 *       break;
 *     case "no-keyring":
 *       console.error("No OS keyring here: pass --store file:<path>.");
 *       break;
 *     default:
 *       console.error(error.message); // names the cause and the fix
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
 * @internal A store's value that holds no usable login: `where` names the value, `detail`
 * says why (never quoting it).
 */
export function corruptLogin(where: string, detail: string): TokenStoreError {
  return new TokenStoreError("corrupt", `${where} holds no usable login: ${detail}. Delete it, or log in again to overwrite it.`);
}

// Retry the login.

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

// Fix the configuration.

/**
 * The codes of the {@link ConfigurationError} family: `switch (err.code)` narrows.
 *
 * @family {@link ConfigurationError}
 */
export type ConfigurationErrorCode = "ERR_CONFIGURATION" | "ERR_PROVIDER_CONFIGURATION" | "ERR_CLIENT_ASSERTION";

/**
 * Fix the configuration: options that cannot work (bad issuer URL, missing client id, ...),
 * thrown at once by the factory or function that got them, and — as its subclass
 * {@link ProviderConfigurationError} — options the identity provider refuses. Neither
 * passes by waiting or by logging in again; the message names the option to change.
 *
 * @example
 * ```ts
 * import { ConfigurationError, createTokenManager, ProviderConfigurationError } from "connect-oidc";
 *
 * try {
 *   const tokens = createTokenManager({ issuer: process.env.OIDC_ISSUER ?? "", clientId: "my-cli" });
 *   await tokens.getAccessToken();
 * } catch (error) {
 *   if (!(error instanceof ConfigurationError)) throw error;
 *   switch (error.code) {
 *     case "ERR_CONFIGURATION": // refused at the door, before any request
 *       console.error(error.message); // names the option and the fix
 *       break;
 *     case "ERR_PROVIDER_CONFIGURATION": // refused by the identity provider
 *       if (error instanceof ProviderConfigurationError) console.error(`Fix the configuration (${error.reason}): ${error.message}`);
 *       break;
 *     case "ERR_CLIENT_ASSERTION": // the client assertion (its token file) cannot be used
 *       console.error(error.message); // names the path, never the content
 *       break;
 *   }
 *   process.exitCode = 78; // EX_CONFIG
 * }
 * ```
 */
export class ConfigurationError extends ConnectOidcError {
  static override readonly code: ConfigurationErrorCode = "ERR_CONFIGURATION";
  override readonly code: ConfigurationErrorCode = "ERR_CONFIGURATION";
}

/**
 * Which option the identity provider's answer shows to be wrong: `switch (err.reason)` narrows.
 *
 * @family {@link ConfigurationError}
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
 * @family {@link ConfigurationError}
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
 * Why a client assertion cannot be used: `switch (err.reason)` narrows.
 *
 * @family {@link ConfigurationError}
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
 * @family {@link ConfigurationError}
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

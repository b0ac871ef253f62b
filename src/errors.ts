/**
 * Error classes with a stable `code`, on the class and the instance, `cause`
 * preserved. Messages never contain token material.
 */
export class ConnectOidcError extends Error {
  static code = "ERR_CONNECT_OIDC";
  code = "ERR_CONNECT_OIDC";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = this.constructor.name;
  }
}

/** The login is gone (no tokens, or a dead refresh token): log in again. */
export class ReauthRequiredError extends ConnectOidcError {
  static override code = "ERR_REAUTH_REQUIRED";
  override code = "ERR_REAUTH_REQUIRED";
}

/** A refresh failed for a reason that may pass (network, timeout, 5xx, 429). */
export class TokenRefreshError extends ConnectOidcError {
  static override code = "ERR_TOKEN_REFRESH";
  override code = "ERR_TOKEN_REFRESH";
  /** Epoch ms of the next attempt, when one is scheduled. */
  readonly retryAt?: number;
  constructor(message: string, options?: { cause?: unknown; retryAt?: number }) {
    super(message, options);
    if (options?.retryAt !== undefined) this.retryAt = options.retryAt;
  }
}

/** A token store cannot be read or written; the message names the cause and the fix. */
export class TokenStoreError extends ConnectOidcError {
  static override code = "ERR_TOKEN_STORE";
  override code = "ERR_TOKEN_STORE";
  /** A short machine-readable reason, e.g. "locked", "no-keyring", "corrupt", "too-large", "lock-timeout". */
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/** A login flow failed (denied, expired, state mismatch, timeout). */
export class LoginError extends ConnectOidcError {
  static override code = "ERR_LOGIN";
  override code = "ERR_LOGIN";
}

/** Options that cannot work (bad issuer URL, missing client id, ...). */
export class ConfigurationError extends ConnectOidcError {
  static override code = "ERR_CONFIGURATION";
  override code = "ERR_CONFIGURATION";
}

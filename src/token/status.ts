/**
 * What `tokens.status()` reports (`TokenStatus`), built from the runner's state and its
 * record of the last refresh and failure. Pure: no I/O, no clock reads (times come in), and
 * nothing that is token material — no token, no key, no secret, only times, scope, the
 * token type, the login's identity and typed errors' codes and messages.
 */
import type { DPoPKeyError } from "../errors.js";
import type { StoredTokens } from "../types.js";
import type { Now, Settings } from "./decision.js";
import { loginOf, type State } from "./state.js";

/**
 * The token manager's state, as `status()` names it: `empty` (no login), `ready`,
 * `refreshing`, `backing-off` (a refresh failed for a reason that may pass; the next
 * attempt is scheduled), `reauth-required` (log in again), `misconfigured` (fix the
 * options), `closed`. The machine's own state names (state.ts), but `loading`: `status()`
 * reads the store first.
 *
 * @example
 * ```ts
 * import type { TokenState } from "connect-oidc";
 *
 * const advice: Record<TokenState, string> = {
 *   empty: "not logged in: run `my-cli login`",
 *   ready: "logged in",
 *   refreshing: "logged in (renewing the token)",
 *   "backing-off": "the identity provider is unreachable; retrying",
 *   "reauth-required": "the login has ended: run `my-cli login`",
 *   misconfigured: "check the configuration",
 *   closed: "shut down",
 * };
 * console.log(advice[(await tokens.status()).state]);
 * ```
 */
export type TokenState = "empty" | "ready" | "refreshing" | "backing-off" | "reauth-required" | "misconfigured" | "closed";

/**
 * A failure as `status()` reports it: the error's `code` (a connect-oidc error's, else its
 * name), its message (token-free) and when it happened (epoch ms).
 *
 * @example
 * ```ts
 * const { lastFailure } = await tokens.status();
 * if (lastFailure) console.error(`${new Date(lastFailure.at).toISOString()} ${lastFailure.code}: ${lastFailure.message}`);
 * ```
 */
export interface TokenFailure {
  readonly code: string;
  readonly message: string;
  readonly at: number;
}

/**
 * What a `whoami` / `status` command prints: never a token, a key or a secret. Times are
 * epoch ms of the local wall clock.
 *
 * @example
 * ```ts
 * const status = await tokens.status(); // reads the store if needed, never asks the provider
 * console.log(`${status.state}: ${status.email ?? status.subject ?? "nobody"}`);
 * if (status.expiresAt !== undefined) console.log(`token until ${new Date(status.expiresAt).toISOString()}`);
 * if (status.lastFailure) console.log(`last failure: ${status.lastFailure.code}: ${status.lastFailure.message}`);
 * ```
 */
export interface TokenStatus {
  readonly state: TokenState;
  readonly issuer: string;
  readonly clientId: string;
  /** When the access token held expires (it may be past). */
  readonly expiresAt?: number;
  /** When the login (its refresh token) ends, when the provider said. */
  readonly refreshExpiresAt?: number;
  /** A refresh token is held (or the grant is client credentials): the token can be renewed without a login. */
  readonly canRefresh: boolean;
  readonly scope?: string;
  /** How the access token is sent: `Bearer`, or `DPoP` (bound to the key of `dpopThumbprint`). */
  readonly tokenType?: "Bearer" | "DPoP";
  /** DPoP: the RFC 7638 thumbprint of the login's key (the tokens' `cnf.jkt`). */
  readonly dpopThumbprint?: string;
  /** Who logged in: the validated ID token's `sub`, `name`, `email`, `preferred_username`. */
  readonly subject?: string;
  readonly name?: string;
  readonly email?: string;
  readonly preferredUsername?: string;
  /** The login's `acr` and `auth_time` (epoch seconds), from its ID token (RFC 9470 step-up). */
  readonly acr?: string;
  readonly authTime?: number;
  /** When this process last got new tokens (a refresh, or another process's login adopted). */
  readonly lastRefreshAt?: number;
  /** The last failure this process saw (a refresh, a dead login, a revocation at sign-out). */
  readonly lastFailure?: TokenFailure;
  /** `backing-off`: when the next attempt is scheduled. */
  readonly retryAt?: number;
}

// Every state of the machine but `loading` is a TokenState, and nothing else is.
type SameKinds<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const kindsAgree: SameKinds<Exclude<State["kind"], "loading">, TokenState> = true;
void kindsAgree;

/** What the runner records besides its state, for `status()`. */
export interface StatusRecord {
  readonly lastRefreshAt?: number;
  readonly lastFailure?: TokenFailure;
}

/** A failure as recorded: its code (a connect-oidc error's `code`, else its name) and message. */
export function failureOf(error: Error, at: number): TokenFailure {
  const code = (error as Partial<DPoPKeyError>).code;
  return { code: typeof code === "string" ? code : error.name, message: error.message, at };
}

/** The status of `state` (never `loading`: the runner reads the store first); the thumbprint is added by the runner. */
export function statusOf(state: State, record: StatusRecord, now: Now, settings: Settings): TokenStatus {
  const tokens: StoredTokens | undefined = loginOf(state)?.tokens;
  return {
    state: state.kind === "loading" ? "empty" : state.kind,
    issuer: settings.issuer,
    clientId: settings.clientId,
    canRefresh: state.kind !== "closed" && (settings.grant === "client_credentials" || tokens?.refreshToken !== undefined),
    ...(tokens === undefined ? {} : loginPart(tokens)),
    ...(record.lastRefreshAt !== undefined ? { lastRefreshAt: record.lastRefreshAt } : {}),
    ...(record.lastFailure !== undefined ? { lastFailure: record.lastFailure } : {}),
    ...(state.kind === "backing-off" ? { retryAt: now.wall + Math.max(0, state.retryAt - now.monotonic) } : {}),
  };
}

/** The login's part: its times, scope, token type and identity. */
function loginPart(tokens: StoredTokens): Partial<TokenStatus> {
  const identity = tokens.identity;
  return {
    ...(tokens.expiresAt !== undefined ? { expiresAt: tokens.expiresAt } : {}),
    ...(tokens.refreshExpiresAt !== undefined ? { refreshExpiresAt: tokens.refreshExpiresAt } : {}),
    ...(tokens.scope !== undefined ? { scope: tokens.scope } : {}),
    ...(tokens.accessToken !== undefined ? { tokenType: tokens.tokenType === "DPoP" ? "DPoP" : "Bearer" } : {}),
    ...(identity !== undefined ? { subject: identity.subject } : {}),
    ...(identity?.name !== undefined ? { name: identity.name } : {}),
    ...(identity?.email !== undefined ? { email: identity.email } : {}),
    ...(identity?.preferredUsername !== undefined ? { preferredUsername: identity.preferredUsername } : {}),
    ...(identity?.acr !== undefined ? { acr: identity.acr } : {}),
    ...(identity?.authTime !== undefined ? { authTime: identity.authTime } : {}),
  };
}

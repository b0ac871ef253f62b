/**
 * One refresh, run under the store's lock: re-read the store, adopt what another process
 * stored, else ask the identity provider and save; on a terminal answer look once more,
 * and mark a dead refresh token in the store so other processes stop without asking.
 * Also whose a stored login is (this manager's issuer and client, fitting its `dpop`
 * option), which the runner's reads outside a refresh ask too. Holds no manager state:
 * everything comes in through the request.
 */
import { isDPoPTokenType, type StoredDPoPKey } from "../dpop-key.js";
import { ConfigurationError, DPoPKeyError, noLogin, noRefreshToken, ReauthRequiredError, TokenStoreError } from "../errors.js";
import { describeFailure, ExchangeFailure, failureFacts } from "../failure.js";
import type { GrantResult, OidcAdapter } from "../oidc.js";
import { identityOfResponse } from "../login-identity.js";
import { isTerminal, MAX_LIFETIME_MS, refreshAt, tokenTimes, type TokenTimes } from "../policy.js";
import { expiresInSeconds, isTokenString, resourceView, sameLogin, tokenResponseProblem, withResource } from "../stored-tokens.js";
import type { Clock, LockHold, RefreshReason, StoredTokens, TokenEndpointResponse, TokenStore } from "../types.js";
import type { Settings } from "./decision.js";
import type { TokenDPoP } from "./dpop.js";
import { type RefreshOutcome, usableAt } from "./state.js";

export interface ExchangeDeps {
  /** `settings.dpop` undefined: DPoP off. */
  readonly settings: Settings;
  readonly store: TokenStore;
  /**
   * The token requests. Nothing of the stored login but the refresh token goes in: the
   * endpoints come from the issuer's discovery, never a store.
   */
  readonly oidc: Pick<OidcAdapter, "refresh" | "clientCredentials">;
  /** What a login lacks for the `dpop` option; with DPoP on, the login's key (a new one for a grant without a login) and its key pair. */
  readonly dpop: Pick<TokenDPoP, "newKey" | "keyPair" | "problem" | "bearerAnswer">;
  /** The wall clock. */
  readonly clock: Pick<Clock, "now">;
}

export interface ExchangeRequest {
  readonly reason: RefreshReason;
  /** The tokens this process uses (ahead of the store when a save failed). */
  readonly held: StoredTokens | undefined;
  /** The store's content as this process last saw it. */
  readonly inStore: StoredTokens | undefined;
  /** What the store's lock handed over, if it can be lost while held: confirmed right before the request. */
  readonly hold?: LockHold | undefined;
  /** The resource server the refresh is for (RFC 8707); undefined: the main token. */
  readonly resource?: string | undefined;
}

export type ExchangeResult =
  | { readonly ok: true; readonly outcome: RefreshOutcome }
  | {
      readonly ok: false;
      /** Token-free: a summary of the identity provider's answer, or our own error. */
      readonly error: Error;
      /** The identity provider's terminal answer (the grant can never work again). */
      readonly terminal: boolean;
      /** The login is gone or unusable: no login, no refresh token, signed out elsewhere. */
      readonly reauth: boolean;
      /** Tokens to go on with although the exchange failed (a rotated refresh token kept). */
      readonly kept?: RefreshOutcome;
      /** The provider's Retry-After, in ms (capped). */
      readonly retryAfterMs?: number;
    };

type Failure = Extract<ExchangeResult, { ok: false }>;

const failure = (error: Error, terminal = false, kept?: RefreshOutcome): Failure => ({
  ok: false,
  error,
  terminal,
  reauth: error instanceof ReauthRequiredError,
  ...(kept !== undefined ? { kept } : {}),
});

/**
 * The stored login if it is this manager's (issuer, client). Client credentials need no
 * login: tokens that do not fit the `dpop` option are simply not there.
 */
export function ownLogin(deps: Pick<ExchangeDeps, "settings" | "dpop">, stored: StoredTokens | undefined): StoredTokens | undefined {
  const { issuer, clientId, grant } = deps.settings;
  if (stored === undefined || stored.issuer.replace(/\/$/, "") !== issuer || stored.clientId !== clientId) return undefined;
  return grant === "client_credentials" && deps.dpop.problem(stored) !== undefined ? undefined : stored;
}

/** A stored login this manager can use as it is: another process's login is adopted only then. */
export function usableLogin(deps: Pick<ExchangeDeps, "settings" | "dpop">, stored: StoredTokens | undefined): StoredTokens | undefined {
  const own = ownLogin(deps, stored);
  return own !== undefined && deps.dpop.problem(own) === undefined ? own : undefined;
}

/**
 * One refresh (of the main token, or of `request.resource`'s) under the store's lock.
 * Every resource's refresh rotates the one refresh token, so all of the login's tokens are
 * saved together.
 */
export async function exchangeUnderLock(deps: ExchangeDeps, request: ExchangeRequest): Promise<ExchangeResult> {
  const refused = refusedToken(request);
  const stored = usableLogin(deps, await deps.store.load());
  // Anything in the store other than what this process last saw there was written by
  // another process since (every writer holds the lock): it is the newer login.
  const changed = !sameLogin(stored, request.inStore);
  if (changed && adoptable(deps, stored, request, refused)) return adopted(stored);
  if (changed && stored === undefined && deps.settings.grant === "refresh_token") return failure(noLogin(deps.settings)); // signed out elsewhere
  const source = changed ? stored : request.held;
  const result = await grantAndSave(deps, source, stored, request).catch((error: unknown) => afterLockLost(deps, request, stored, error));
  if (result.ok || !result.terminal) return result;
  return afterTerminal(deps, request, result, source, stored);
}

/**
 * The lock was lost before the request (LockHold.confirm threw "fenced"): the other holder
 * has refreshed, or is refreshing. Its newer login is adopted if it is there now; otherwise
 * the error stands (a transient failure: the next attempt waits for the lock).
 */
async function afterLockLost(
  deps: ExchangeDeps,
  request: ExchangeRequest,
  seen: StoredTokens | undefined,
  error: unknown,
): Promise<ExchangeResult> {
  if (!(error instanceof TokenStoreError && error.reason === "fenced")) throw error;
  const newer = usableLogin(deps, await deps.store.load());
  if (!sameLogin(newer, seen) && adoptable(deps, newer, request, refusedToken(request))) return adopted(newer);
  throw error;
}

/** Terminal: another process may have rotated the token in between. Look once more. */
async function afterTerminal(
  deps: ExchangeDeps,
  request: ExchangeRequest,
  terminal: Failure,
  used: StoredTokens | undefined,
  seen: StoredTokens | undefined,
): Promise<ExchangeResult> {
  const again = usableLogin(deps, await deps.store.load());
  if (!sameLogin(again, seen) && again?.refreshToken !== used?.refreshToken) {
    if (adoptable(deps, again, request, refusedToken(request))) return adopted(again);
    return grantAndSave(deps, again, again, request);
  }
  // Tell the other processes: this refresh token is dead. They then stop without asking the
  // identity provider (which would count each of them as another invalid_grant). Only for a
  // dead grant: a refusal of this process's client settings (invalid_client, invalid_scope,
  // a bare 401) says nothing of the login other processes share. A login ended by bearer
  // answers is dead too: its stored refresh token was consumed by the answer refused.
  const deadGrant =
    failureFacts(terminal.error).error === "invalid_grant" ||
    (terminal.error instanceof DPoPKeyError && terminal.error.reason === "bearer-refresh");
  if (deadGrant && used?.refreshToken !== undefined && again?.refreshToken === used.refreshToken) {
    const { refreshToken: _dead, ...withoutRefreshToken } = again;
    await deps.store.save(withoutRefreshToken).catch(() => {});
  }
  return terminal;
}

function adopted(stored: StoredTokens | undefined): ExchangeResult {
  return { ok: true, outcome: { tokens: stored!, inStore: stored, adopted: true } };
}

/** A forced refresh: the token a server refused (the main one, or the resource's). */
function refusedToken(request: ExchangeRequest): string | undefined {
  if (request.reason !== "rejected" || request.held === undefined) return undefined;
  return resourceView(request.held, request.resource).accessToken;
}

/** The stored login has a token for the request's target (main or resource) that serves it: no need to ask. */
function adoptable(
  deps: ExchangeDeps,
  stored: StoredTokens | undefined,
  request: Pick<ExchangeRequest, "reason" | "resource">,
  refused: string | undefined,
): stored is StoredTokens {
  const now = deps.clock.now();
  const target = stored === undefined ? undefined : resourceView(stored, request.resource);
  if (!usableAt(target, now) || target.accessToken === refused) return false;
  // A proactive refresh wants a token that is not itself due for one.
  return request.reason !== "proactive" || now < refreshAt(target as TokenTimes, deps.settings.refreshWindowMs);
}

/**
 * Ask the identity provider, then save. `stored`: the store's content before (kept as
 * `inStore` if the save fails); `hold`: the lock, confirmed right before the request.
 */
async function grantAndSave(
  deps: ExchangeDeps,
  source: StoredTokens | undefined,
  stored: StoredTokens | undefined,
  { hold, resource }: Pick<ExchangeRequest, "hold" | "resource">,
): Promise<ExchangeResult> {
  let refreshToken: string | undefined;
  if (deps.settings.grant === "refresh_token") {
    refreshToken = source?.refreshToken;
    if (refreshToken === undefined) {
      return failure(source?.accessToken === undefined ? noLogin(deps.settings) : noRefreshToken(deps.settings));
    }
  }
  const key = await dpopKeyFor(deps, source);
  if (key.error !== undefined) return failure(key.error);
  // A holder that stalled since its read may have lost the lock to a process that is
  // presenting this same refresh token now: then this refresh is abandoned (it throws
  // TokenStoreError "fenced", a transient failure) and the newer login stands.
  await hold?.confirm();
  const sentAt = deps.clock.now();
  const granted =
    refreshToken === undefined
      ? await deps.oidc.clientCredentials(key.keyPair, resource)
      : await deps.oidc.refresh(refreshToken, key.keyPair, resource);
  const result = unusableRefused(bearerRefused(deps, granted), refreshToken);
  if (!result.ok) {
    if (result.rotatedRefreshToken === undefined || source === undefined) {
      // Our own verdicts on an answer (bearer tokens for DPoP: bearerRefused) are final too.
      const final = result.error instanceof ConfigurationError || result.error instanceof ReauthRequiredError;
      const failed = failure(result.error, final || isTerminal(failureFacts(result.error)));
      return result.retryAfterMs === undefined ? failed : { ...failed, retryAfterMs: result.retryAfterMs };
    }
    // The answer was rejected, but the provider rotated the refresh token: the old one is
    // consumed. Keep the new one (memory and store), so the next attempt does not present
    // a used refresh token — which a provider with reuse detection answers by revoking the login.
    const rotated = { ...source, refreshToken: result.rotatedRefreshToken };
    const kept = await save(deps, rotated, stored);
    const error = new ExchangeFailure(`${describeFailure(result.error)}; the new refresh token was kept`, failureFacts(result.error));
    return failure(error, false, kept);
  }
  const grantedLogin =
    resource === undefined
      ? storedFromResponse(deps.settings, result.response, sentAt, source, key.stored)
      : storedForResource(deps.settings, result.response, sentAt, source, key.stored, resource);
  return { ok: true, outcome: await save(deps, grantedLogin, stored) };
}

/**
 * The login after a refresh for `resource`: that resource's new access token, the new
 * refresh token (and the login's end), and everything else as it was.
 */
function storedForResource(
  login: Pick<Settings, "issuer" | "clientId">,
  response: TokenEndpointResponse,
  sentAt: number,
  source: StoredTokens | undefined,
  dpopKey: StoredDPoPKey | undefined,
  resource: string,
): StoredTokens {
  const granted = storedFromResponse(login, response, sentAt, source, dpopKey);
  const { accessToken, issuedAt, expiresAt, tokenType, scope: _scope, ...rest } = granted;
  const main: Partial<StoredTokens> = {};
  for (const key of ["accessToken", "issuedAt", "expiresAt", "scope", "tokenType"] as const) {
    if (source?.[key] !== undefined) Object.assign(main, { [key]: source[key] });
  }
  return withResource({ ...rest, ...main }, resource, {
    accessToken: accessToken!,
    issuedAt: issuedAt!,
    expiresAt: expiresAt!,
    ...(tokenType !== undefined ? { tokenType } : {}),
  });
}

/**
 * DPoP on: the key to bind the tokens to (the login's; a new one for client credentials
 * without one) and its key pair, or why there is none (a `DPoPKeyError`: a re-login helps).
 */
async function dpopKeyFor(
  deps: ExchangeDeps,
  source: StoredTokens | undefined,
): Promise<{ stored?: StoredDPoPKey; keyPair?: CryptoKeyPair; error?: Error }> {
  if (deps.settings.dpop === undefined) return {};
  // A refresh token is bound to the login's key: without it, only a new login helps.
  const problem = deps.settings.grant === "refresh_token" && source !== undefined ? deps.dpop.problem(source) : undefined;
  if (problem !== undefined) return { error: problem };
  const stored = source?.dpopKey ?? (await deps.dpop.newKey());
  try {
    return { stored, keyPair: await deps.dpop.keyPair(stored) };
  } catch (error) {
    return { error: error as Error };
  }
}

/**
 * A DPoP request answered with bearer tokens (the provider does not bind them): not used,
 * never a silent downgrade. While the login goes on, a new refresh token in it is kept like
 * one of any rejected answer; when the answer ends it (`TokenDPoP.bearerAnswer`), nothing is.
 */
function bearerRefused(deps: ExchangeDeps, result: GrantResult): GrantResult {
  if (!result.ok || deps.settings.dpop === undefined) return result;
  const refused = deps.dpop.bearerAnswer(result.response.token_type, deps.settings.grant);
  if (refused === undefined) return result;
  const rotated = result.response.refresh_token;
  return {
    ok: false,
    error: refused.error,
    ...(refused.keepRotated && isTokenString(rotated) ? { rotatedRefreshToken: rotated } : {}),
  };
}

/**
 * An answer that cannot be kept (`tokenResponseProblem`: no access token, a token that is
 * no valid header value): not used, never quoted. A usable new refresh token in it is kept
 * like one of any rejected answer (the one sent may be consumed now).
 */
function unusableRefused(result: GrantResult, sent: string | undefined): GrantResult {
  if (!result.ok) return result;
  const problem = tokenResponseProblem(result.response);
  if (problem === undefined) return result;
  const rotated = result.response.refresh_token;
  return {
    ok: false,
    error: new ExchangeFailure(`the identity provider's token answer is unusable: ${problem}`, {}),
    ...(isTokenString(rotated) && rotated !== sent ? { rotatedRefreshToken: rotated } : {}),
  };
}

/** Save; if the store fails, the tokens are in use all the same (this process holds the live refresh token). */
async function save(deps: ExchangeDeps, tokens: StoredTokens, stored: StoredTokens | undefined): Promise<RefreshOutcome> {
  try {
    await deps.store.save(tokens);
    return { tokens, inStore: tokens, adopted: false };
  } catch (error) {
    return { tokens, inStore: stored, adopted: false, saveError: error instanceof Error ? error : new Error(String(error)) };
  }
}

/** The persisted form of a token response (checked with `tokenResponseProblem` first). */
export function storedFromResponse(
  login: Pick<Settings, "issuer" | "clientId">,
  response: TokenEndpointResponse,
  sentAt: number,
  previous?: StoredTokens,
  dpopKey?: StoredDPoPKey,
): StoredTokens {
  const times = tokenTimes(sentAt, expiresInSeconds(response.expires_in));
  const refreshToken = response.refresh_token ?? previous?.refreshToken;
  // The login's end: from this answer, else — the refresh token kept — as known before.
  const refreshLifetime = expiresInSeconds(response.refresh_expires_in ?? response.refresh_token_expires_in);
  const refreshExpiresAt =
    refreshLifetime !== undefined && refreshLifetime > 0
      ? sentAt + Math.min(refreshLifetime * 1000, MAX_LIFETIME_MS)
      : refreshToken === previous?.refreshToken
        ? previous?.refreshExpiresAt
        : undefined;
  // Who logged in: from the login's validated ID token; a refresh keeps it.
  const identity = identityOfResponse(response) ?? previous?.identity;
  return {
    version: 1,
    issuer: login.issuer,
    clientId: login.clientId,
    accessToken: response.access_token,
    ...(refreshToken !== undefined ? { refreshToken } : {}),
    issuedAt: times.issuedAt,
    expiresAt: times.expiresAt,
    ...(refreshExpiresAt !== undefined ? { refreshExpiresAt } : {}),
    ...(typeof response.scope === "string" ? { scope: response.scope } : {}),
    ...(isDPoPTokenType(response.token_type) ? { tokenType: "DPoP" as const } : {}),
    ...(dpopKey !== undefined ? { dpopKey } : {}),
    ...(identity !== undefined ? { identity } : {}),
    // The resources' tokens stay valid through a refresh of the main one.
    ...(previous?.resources !== undefined ? { resources: previous.resources } : {}),
  };
}

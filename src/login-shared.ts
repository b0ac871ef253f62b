/**
 * What both logins share (internal): their common options, the option checks, discovery,
 * one abortable step of a login, and the plain result.
 */
import type * as oidc from "openid-client";
import { abortable } from "./abortable.js";
import { idpDPoPHandle } from "./dpop-idp-nonce.js";
import { type DPoPKey, type DPoPOption, dpopAlgorithm, generateDPoPKey, isDPoPTokenType } from "./dpop-key.js";
import { ConfigurationError, LoginError, ProviderConfigurationError } from "./errors.js";
import { describeFailure, summarizeFailure } from "./failure.js";
import { tokenRequestMisconfiguration } from "./misconfiguration.js";
import { discover, loadOpenidClient } from "./oidc.js";
import { identityOfResponse } from "./login-identity.js";
import { tokenResponseProblem } from "./stored-tokens.js";
import { checkFunction, checkIssuer, checkString } from "./options.js";
import type { CustomFetch, TokenEndpointResponse } from "./types.js";

/** The scope both logins request when none is given: an ID token and a refresh token. */
export const DEFAULT_LOGIN_SCOPE = "openid offline_access";

/** Options shared by both logins. */
export interface LoginOptions {
  /** Issuer URL; discovered through openid-client. */
  readonly issuer: string | URL;
  /** A public client (no secret) registered for this login flow. */
  readonly clientId: string;
  /** Default `"openid offline_access"`: ask for a refresh token so the login lasts. */
  readonly scope?: string;
  /** RFC 8707 resource indicator, sent with the authorization and the token request. */
  readonly resource?: string;
  /** Allow an http:// issuer: loopback development and tests only. */
  readonly allowInsecureRequests?: boolean;
  /**
   * Cancels the login. The promise then rejects at once with `signal.reason`
   * (as `fetch` does), not with a `LoginError`.
   */
  readonly signal?: AbortSignal;
  /**
   * DPoP (RFC 9449): `true` (ES256) or `{ algorithm }`, as given to the token manager. The
   * login makes a key pair, binds the code to it (a proof on the token request; the browser
   * login also sends `dpop_jkt`) and returns it as `dpopKey` with the DPoP-bound tokens. An
   * identity provider that answers with bearer tokens ends the login with a `LoginError`.
   */
  readonly dpop?: DPoPOption;
  /**
   * Your own `fetch` for every request to the identity provider (discovery, device
   * authorization, token requests): a proxy, a private CA, a client certificate, instrumentation.
   * Default: the global `fetch`. If it throws, the login fails with a `LoginError`.
   */
  readonly fetch?: CustomFetch;
}

/** @internal Throws a `ConfigurationError` for options that cannot work. */
export function checkLoginOptions(name: string, options: LoginOptions): URL {
  if (typeof options !== "object" || options === null) throw new ConfigurationError(`${name}: options are required`);
  const issuer = checkIssuer(name, options.issuer, options.allowInsecureRequests);
  checkString(name, "clientId", options.clientId, true);
  checkString(name, "scope", options.scope, false);
  checkString(name, "resource", options.resource, false);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new ConfigurationError(`${name}: \`signal\` must be an AbortSignal`);
  }
  dpopAlgorithm(name, options.dpop);
  checkFunction(name, "fetch", options.fetch);
  return issuer;
}

/** @internal A login's DPoP key and openid-client's handle for it; undefined without `dpop`. */
export interface LoginDPoP {
  readonly key: DPoPKey;
  readonly handle: oidc.DPoPHandle;
}

/**
 * @internal The login's DPoP key (extractable: the token manager keeps it as JWKs in a store
 * that serializes, or re-imports it non-extractable in memory) and its handle.
 */
export async function loginDPoP(name: string, options: LoginOptions, config: oidc.Configuration): Promise<LoginDPoP | undefined> {
  const algorithm = dpopAlgorithm(name, options.dpop);
  if (algorithm === undefined) return undefined;
  const key = await generateDPoPKey(algorithm, true);
  const lib = await loadOpenidClient();
  // The provider's nonce this handle learns is kept for the token manager's first refresh.
  return { key, handle: idpDPoPHandle(lib, config, key.keyPair) };
}

/**
 * @internal The plain login result, with its DPoP key when the login used one. An answer
 * `setTokens` would refuse (a token that is no valid header value, say) is refused here,
 * never quoted; bearer tokens for a DPoP login too: the user asked for bound tokens.
 */
export function loginResult(name: string, response: oidc.TokenEndpointResponse, dpop: LoginDPoP | undefined): TokenEndpointResponse {
  // The validated ID token's claims (openid-client checked them): the helper is not copied.
  const identity = identityOfResponse(response as unknown as TokenEndpointResponse);
  const plain = identity === undefined ? plainResponse(response) : { ...plainResponse(response), identity };
  const problem = tokenResponseProblem(plain);
  if (problem !== undefined) throw new LoginError(`${name}: the identity provider's token answer is unusable: ${problem}`);
  if (dpop === undefined) return plain;
  if (!isDPoPTokenType(plain.token_type)) {
    throw new LoginError(
      `${name}: the identity provider answered with ${String(plain.token_type ?? "untyped")} tokens, not DPoP-bound ones: it does not support DPoP for this client (drop \`dpop\`, or enable DPoP at the provider)`,
    );
  }
  return { ...plain, dpopKey: dpop.key };
}

/**
 * @internal Discovery for a login: abortable; a wrong issuer as `ProviderConfigurationError`
 * (fix the options, not the login), other failures as `LoginError`.
 */
export function discoverForLogin(name: string, options: LoginOptions): Promise<oidc.Configuration> {
  return step(
    discover({
      issuer: options.issuer,
      clientId: options.clientId,
      ...(options.allowInsecureRequests ? { allowInsecureRequests: true } : {}),
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
    }),
    options.signal,
    (error) =>
      error instanceof ProviderConfigurationError
        ? new ProviderConfigurationError(error.reason, `${name}: ${error.message}`, { cause: error.cause })
        : loginFailure(`${name}: discovery of ${new URL(options.issuer).href} failed: ${describeFailure(error)}`, error),
  );
}

/**
 * @internal A failed request of a login: a `ProviderConfigurationError` when the identity
 * provider refuses the client's settings (unknown client, a scope or grant it may not have:
 * logging in again cannot help), else a `LoginError` with `message`.
 */
export function loginRequestFailure(
  name: string,
  grant: "authorization_code" | "device_code",
  options: LoginOptions,
  message: string,
  error: unknown,
): Error {
  const misconfiguration = tokenRequestMisconfiguration(summarizeFailure(error), {
    issuer: new URL(options.issuer).href.replace(/\/$/, ""),
    clientId: options.clientId,
    grant,
    credentials: "none",
    scope: options.scope ?? DEFAULT_LOGIN_SCOPE,
    ...(options.resource !== undefined ? { resource: options.resource } : {}),
  });
  if (misconfiguration === undefined) return loginFailure(message, error);
  return new ProviderConfigurationError(misconfiguration.reason, `${name}: ${misconfiguration.message}`, { cause: misconfiguration.cause });
}

/**
 * @internal A `LoginError` for a failed exchange with the identity provider. Its cause is
 * the token-free summary: openid-client's errors may hold the token response body (new
 * tokens) or the callback parameters (the authorization code) in their cause chain.
 */
export function loginFailure(message: string, error: unknown): LoginError {
  return new LoginError(message, { cause: summarizeFailure(error) });
}

/**
 * @internal Wait for one step of a login. An abort rejects at once with the signal's
 * reason (whatever the step does meanwhile); any other failure goes through `fail`.
 */
export async function step<T>(promise: Promise<T>, signal: AbortSignal | undefined, fail: (error: unknown) => Error): Promise<T> {
  try {
    return await abortable(promise, signal);
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw fail(error);
  }
}

/** @internal openid-client adds helper methods to the response; keep only the data. */
export function plainResponse(response: oidc.TokenEndpointResponse): TokenEndpointResponse {
  return { ...response } as TokenEndpointResponse;
}

/**
 * Token exchange (RFC 8693) as a `TokenProvider`: one service's token, traded for one meant
 * for another. Owns the exchanged token's cache (in memory, monotonic times), when to
 * exchange again (the refresh policy; a new subject or actor token; a server's refusal, paced),
 * one exchange at a time per subject, and what a refusal means: the configuration (final
 * until it has worked), the subject's login (its reauth, asked once), or a wait.
 */
import { abortable } from "./abortable.js";
import {
  type ClientAssertion,
  type ClientAuthentication,
  type ClientPrivateKey,
  checkClientAuthentication,
  credentialsKind,
} from "./client-auth.js";
import { monotonicOf, systemClock } from "./clock.js";
import { ConfigurationError, ReauthRequiredError, TokenRefreshError } from "./errors.js";
import { describeFailure, failureFacts, summarizeFailure } from "./failure.js";
import { type RequestSettings, tokenRequestMisconfiguration } from "./misconfiguration.js";
import { createOidcAdapter, type GrantResult, type OidcAdapter } from "./oidc.js";
import { checkDuration, checkFunction, checkIssuer, checkString } from "./options.js";
import {
  DEFAULT_REFRESH_WINDOW_MS,
  DEMAND_RETRY_MS,
  failureKind,
  forcedRefreshDelay,
  isUsable,
  refreshAt,
  type TokenTimes,
  tokenTimes,
} from "./policy.js";
import { isTokenString } from "./stored-tokens.js";
import type { Clock, CustomFetch, TokenProvider } from "./types.js";

/** RFC 8693's token type of an access token (the default for the subject and the actor). */
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";

/**
 * Where a token to exchange comes from: a {@link TokenProvider} (the user's token manager:
 * told when the identity provider refuses its token) or a function returning the token.
 *
 * @example
 * ```ts
 * import type { ExchangeSource } from "connect-oidc";
 *
 * const fromManager: ExchangeSource = tokens; // a TokenManager
 * const fromRequest: ExchangeSource = () => incomingBearerToken; // a service acting on its caller's token
 * ```
 */
export type ExchangeSource = TokenProvider | (() => string | Promise<string>);

/**
 * Options of {@link createTokenExchange}. `issuer`, `clientId`, `subject` and a target
 * (`audience` or `resource`) are required.
 *
 * @example
 * ```ts
 * import { createTokenExchange, type TokenExchangeOptions } from "connect-oidc";
 *
 * const options: TokenExchangeOptions = {
 *   issuer: "https://login.example.com",
 *   clientId: "coding-agent",
 *   clientSecret: process.env.AGENT_SECRET,
 *   subject: userTokens, // the user's TokenManager
 *   audience: "https://events.example.com",
 *   scope: "events:read",
 * };
 * const eventsTokens = createTokenExchange(options);
 * ```
 */
export interface TokenExchangeOptions {
  readonly issuer: string | URL;
  readonly clientId: string;
  readonly clientSecret?: string;
  /** As in the token manager; default from the credentials given and what the provider lists. */
  readonly clientAuthentication?: ClientAuthentication;
  readonly clientPrivateKey?: ClientPrivateKey;
  /** A JWT from the platform (RFC 7523), asked for before every exchange: see `clientAssertionFromFile`. */
  readonly clientAssertion?: ClientAssertion;
  /** Whose token is exchanged (RFC 8693 `subject_token`). */
  readonly subject: ExchangeSource;
  /** Default `urn:ietf:params:oauth:token-type:access_token`. */
  readonly subjectTokenType?: string;
  /** Delegation: who acts for the subject (`actor_token`, e.g. the agent's own token); the `act` claim. */
  readonly actor?: ExchangeSource;
  /** Default `urn:ietf:params:oauth:token-type:access_token`. */
  readonly actorTokenType?: string;
  /** The target service, by the name the provider knows it by (`audience`)... */
  readonly audience?: string;
  /** ...or by its URI (RFC 8707 `resource`). At least one of the two. */
  readonly resource?: string;
  readonly scope?: string;
  /** Sent as `requested_token_type` when given. */
  readonly requestedTokenType?: string;
  /** Exchange again this long before the token expires: min(this, 25 % of its lifetime). Default 15 min. */
  readonly refreshWindowMs?: number;
  /** Each token-endpoint request; default 10 s. */
  readonly timeoutMs?: number;
  /** Allow an http:// issuer: loopback development and tests only. */
  readonly allowInsecureRequests?: boolean;
  /** Time source (its monotonic clock times the cache). Default: the system clock. */
  readonly clock?: Clock;
  /** Your own `fetch` for every request to the identity provider, as in the token manager. Default: the global `fetch`. */
  readonly fetch?: CustomFetch;
}

/**
 * What {@link createTokenExchange} returns: a {@link TokenProvider} for
 * `createAuthInterceptor` (with `accepted`, which the interceptor calls).
 *
 * @example
 * ```ts
 * import { createAuthInterceptor, createTokenExchange, type TokenExchange } from "connect-oidc";
 *
 * const events: TokenExchange = createTokenExchange({ issuer, clientId, clientSecret, subject: tokens, audience: "events" });
 * const interceptor = createAuthInterceptor(events);
 * ```
 */
export interface TokenExchange extends TokenProvider {
  accepted(token: string): void;
}

interface Exchanged {
  readonly token: string;
  readonly key: string;
  /** Monotonic. */
  readonly times: TokenTimes;
}

interface Inputs {
  readonly subject: string;
  readonly actor: string | undefined;
}

const keyOf = (inputs: Inputs) => `${inputs.subject}\n${inputs.actor ?? ""}`;

/**
 * A {@link TokenProvider} of tokens for one target service, exchanged (RFC 8693, through
 * openid-client's `genericGrantRequest`) for the subject's token: cached, exchanged again
 * before they expire (callers keep the cached one meanwhile), when the subject's (or the
 * actor's) token changes, and when a server refuses one (the interceptor's retry; paced
 * like the token manager's forced refreshes). Concurrent callers share one exchange.
 * Refusals: `invalid_grant` (the subject's login has ended) tells a `TokenProvider` subject
 * that its token was refused and exchanges once more with a newer one, else fails with a
 * `ReauthRequiredError` — and that subject token is not exchanged again; `invalid_target`,
 * `invalid_scope`, `invalid_client`, ... are a `ProviderConfigurationError` (final until the
 * settings have worked in this process); outages a `TokenRefreshError` (asked again after 1 s).
 *
 * @example
 * ```ts
 * import { createClient } from "@connectrpc/connect";
 * import { createConnectTransport } from "@connectrpc/connect-node";
 * import { createAuthInterceptor, createTokenExchange, createTokenManager } from "connect-oidc";
 *
 * const user = createTokenManager({ issuer, clientId: "my-cli", store });
 * // The agent calls the events service as the user, with a token meant for that service only.
 * const events = createTokenExchange({
 *   issuer,
 *   clientId: "coding-agent",
 *   clientSecret: process.env.AGENT_SECRET,
 *   subject: user,
 *   actor: agentTokens, // optional: delegation, the agent named in the token's `act` claim
 *   audience: "https://events.example.com",
 * });
 * const client = createClient(EventsService, createConnectTransport({
 *   baseUrl: "https://events.example.com",
 *   httpVersion: "2",
 *   interceptors: [createAuthInterceptor(events)],
 * }));
 * ```
 */
export function createTokenExchange(options: TokenExchangeOptions): TokenExchange {
  const settings = checkOptions(options);
  const clock = options.clock ?? systemClock;
  const monotonic = monotonicOf(clock);
  const oidc = createOidcAdapter({ ...options, issuer: settings.issuer });
  const window = options.refreshWindowMs ?? DEFAULT_REFRESH_WINDOW_MS;

  let current: Exchanged | undefined;
  /** The provider granted an exchange to these settings in this process. */
  let worked = false;
  let misconfigured: ConfigurationError | undefined;
  let outage: { readonly error: TokenRefreshError; readonly until: number } | undefined;
  /** Subject tokens the provider refused (invalid_grant), with the error each call then gets. */
  const deadSubjects = new Map<string, ReauthRequiredError>();
  /** Forced exchanges (a server refused the token) whose tokens no server accepted since. */
  let forced = { unaccepted: 0, at: Number.NEGATIVE_INFINITY };
  const flights = new Map<string, Promise<Exchanged>>();

  const exchangeFor = (inputs: Inputs): Promise<Exchanged> => {
    const key = keyOf(inputs);
    let flight = flights.get(key);
    if (flight === undefined) {
      flight = exchange(inputs, true).finally(() => flights.delete(key));
      flights.set(key, flight);
    }
    return flight;
  };

  const exchange = async (inputs: Inputs, mayRetry: boolean): Promise<Exchanged> => {
    const dead = deadSubjects.get(inputs.subject);
    if (dead !== undefined) throw dead;
    if (outage !== undefined && monotonic() < outage.until) throw outage.error;
    const sentAt = monotonic();
    const result = await requestExchange(oidc, options, inputs);
    if (result.ok) {
      const token = result.response.access_token;
      if (!isTokenString(token))
        return failed(new TokenRefreshError("The identity provider's token exchange answer has no usable access token"));
      worked = true;
      outage = undefined;
      current = { token, key: keyOf(inputs), times: tokenTimes(sentAt, result.response.expires_in) };
      return current;
    }
    const error = result.error;
    const misconfiguration = error instanceof ConfigurationError ? error : tokenRequestMisconfiguration(error, settings.request);
    if (misconfiguration !== undefined) {
      if (!worked) {
        misconfigured = misconfiguration;
        throw misconfiguration;
      }
      return failed(error, result.retryAfterMs);
    }
    if (failureKind(failureFacts(error), "token_exchange") !== "reauth") return failed(error, result.retryAfterMs);
    return subjectRefused(inputs, error, mayRetry);
  };

  /** A failure that may pass: callers get it for a second (or the provider's Retry-After), then ask again. */
  const failed = (error: Error, retryAfterMs = 0): never => {
    const wait = Math.max(DEMAND_RETRY_MS, retryAfterMs);
    const refreshError = new TokenRefreshError(
      `Could not exchange the token: ${describeFailure(error)}${error instanceof ConfigurationError ? " (these settings worked before in this process: taken to pass)" : ""}; next attempt in ${Math.ceil(wait / 1000)} s`,
      { cause: summarizeFailure(error), retryAt: clock.now() + wait },
    );
    outage = { error: refreshError, until: monotonic() + wait };
    throw refreshError;
  };

  /** invalid_grant: the subject's (or actor's) token is no longer valid. The subject is told once; no loop. */
  const subjectRefused = async (inputs: Inputs, error: Error, mayRetry: boolean): Promise<Exchanged> => {
    if (mayRetry && typeof options.subject === "object") {
      // A TokenProvider subject (a token manager) refreshes a refused token, or says "log in again".
      const fresh = await options.subject.getAccessToken({ rejected: inputs.subject });
      if (fresh !== inputs.subject) return exchange({ ...inputs, subject: fresh }, false);
    }
    const reauth = new ReauthRequiredError(
      `The identity provider refused to exchange the subject's token (${describeFailure(error)}): its login has ended — log in again (and pass the result to setTokens()); an actor token may have expired too`,
      { cause: summarizeFailure(error) },
    );
    deadSubjects.set(inputs.subject, reauth);
    throw reauth;
  };

  const getAccessToken: TokenProvider["getAccessToken"] = async (callOptions) => {
    if (misconfigured !== undefined) throw misconfigured;
    const signal = callOptions?.signal;
    const inputs = await abortable(inputsOf(options, signal), signal);
    const now = monotonic();
    let cached = current?.key === keyOf(inputs) ? current : undefined;
    if (cached !== undefined && callOptions?.rejected === cached.token) {
      // A server refused it: exchange again at once the first time, then paced while none is accepted.
      if (now - forced.at < forcedRefreshDelay(forced.unaccepted)) return cached.token;
      forced = { unaccepted: forced.unaccepted + 1, at: now };
      cached = undefined;
    }
    if (cached !== undefined && isUsable(cached.times, now)) {
      if (now >= refreshAt(cached.times, window)) exchangeFor(inputs).catch(() => {}); // ahead of expiry; callers keep this one
      return cached.token;
    }
    return (await abortable(exchangeFor(inputs), signal)).token;
  };

  return {
    getAccessToken,
    accepted(token) {
      if (token === current?.token) forced = { unaccepted: 0, at: forced.at };
    },
  };
}

/** The subject's (and actor's) token now. */
async function inputsOf(options: TokenExchangeOptions, signal: AbortSignal | undefined): Promise<Inputs> {
  const [subject, actor] = await Promise.all([
    tokenFrom(options.subject, "subject", signal),
    options.actor === undefined ? undefined : tokenFrom(options.actor, "actor", signal),
  ]);
  return { subject, actor };
}

async function tokenFrom(source: ExchangeSource, name: string, signal: AbortSignal | undefined): Promise<string> {
  const token = typeof source === "function" ? await source() : await source.getAccessToken(signal !== undefined ? { signal } : undefined);
  if (!isTokenString(token)) throw new ConfigurationError(`createTokenExchange: the \`${name}\` gave no token (a non-empty string)`);
  return token;
}

function requestExchange(oidc: OidcAdapter, options: TokenExchangeOptions, inputs: Inputs): Promise<GrantResult> {
  const parameters: Record<string, string> = {
    subject_token: inputs.subject,
    subject_token_type: options.subjectTokenType ?? ACCESS_TOKEN_TYPE,
  };
  if (inputs.actor !== undefined) {
    parameters.actor_token = inputs.actor;
    parameters.actor_token_type = options.actorTokenType ?? ACCESS_TOKEN_TYPE;
  }
  if (options.audience !== undefined) parameters.audience = options.audience;
  if (options.resource !== undefined) parameters.resource = options.resource;
  if (options.scope !== undefined) parameters.scope = options.scope;
  if (options.requestedTokenType !== undefined) parameters.requested_token_type = options.requestedTokenType;
  return oidc.tokenExchange!(parameters);
}

function checkOptions(options: TokenExchangeOptions): { issuer: string; request: RequestSettings } {
  const name = "createTokenExchange";
  if (typeof options !== "object" || options === null) throw new ConfigurationError(`${name}: options are required`);
  const issuer = checkIssuer(name, options.issuer, options.allowInsecureRequests).href.replace(/\/$/, "");
  checkString(name, "clientId", options.clientId, true);
  checkString(name, "clientSecret", options.clientSecret, false);
  for (const option of ["audience", "resource", "scope", "subjectTokenType", "actorTokenType", "requestedTokenType"] as const) {
    checkString(name, option, options[option], false);
  }
  if (options.audience === undefined && options.resource === undefined) {
    throw new ConfigurationError(`${name}: name the target service with \`audience\` or \`resource\``);
  }
  for (const option of ["subject", "actor"] as const) {
    const source = options[option];
    if (source === undefined && option === "actor") continue;
    if (typeof source !== "function" && typeof (source as TokenProvider | undefined)?.getAccessToken !== "function") {
      throw new ConfigurationError(`${name}: \`${option}\` must be a TokenProvider (e.g. a token manager) or a function returning a token`);
    }
  }
  checkClientAuthentication(name, options);
  checkDuration(name, "refreshWindowMs", options.refreshWindowMs, 0);
  checkDuration(name, "timeoutMs", options.timeoutMs, 1);
  checkFunction(name, "clock.now", options.clock?.now);
  checkFunction(name, "fetch", options.fetch);
  return {
    issuer,
    request: {
      issuer,
      clientId: options.clientId,
      grant: "token_exchange",
      credentials: credentialsKind(options),
      ...(options.scope !== undefined ? { scope: options.scope } : {}),
      ...(options.resource !== undefined ? { resource: options.resource } : {}),
      ...(options.audience !== undefined ? { audience: options.audience } : {}),
    },
  };
}

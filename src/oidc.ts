/**
 * The OIDC adapter: every exchange with the identity provider, through openid-client.
 *
 * Client credentials and refresh tokens go only to endpoints this process learned from the
 * issuer itself: discovery over the configured issuer URL, kept in memory for a day
 * (monotonic clock). Nothing read back from a store names an endpoint: whoever can write
 * the store could otherwise point the token endpoint at their own server and receive the
 * client's secret, assertion or refresh token. A fresh process therefore pays one
 * discovery request before its first exchange. When the token endpoint learned earlier
 * provably never took a request (a refused connection, 404/405: it moved), the issuer is
 * discovered again and the grant asked again, once.
 *
 * openid-client (with its OAuth and JOSE layers) is loaded on first use: a process whose
 * stored token is valid never needs it, and a short-lived one would pay for it on every start.
 */
import type * as oidc from "openid-client";
import {
  type ClientAssertion,
  type ClientAuthentication,
  type ClientCredentialsOptions,
  chooseClientAuthentication,
  isJwtShaped,
} from "./client-auth.js";
import { MAX_TIMER_MS } from "./clock.js";
import { idpDPoPHandle } from "./dpop-idp-nonce.js";
import { ClientAssertionError, ConnectOidcError } from "./errors.js";
import { ExchangeFailure, failureFacts, libraryCode, summarizeFailure } from "./failure.js";
import { discoveryFailure } from "./misconfiguration.js";
import { retryAfterMs } from "./policy.js";
import { isTokenString } from "./stored-tokens.js";
import type { Clock, CustomFetch, TokenEndpointResponse } from "./types.js";

export interface OidcAdapterOptions extends ClientCredentialsOptions {
  readonly issuer: string | URL;
  readonly clientId: string;
  readonly scope?: string;
  readonly resource?: string;
  readonly timeoutMs?: number;
  readonly allowInsecureRequests?: boolean;
  /** Wall clock (Retry-After dates) and monotonic clock (the metadata's age). Default: the system clock. */
  readonly clock?: Pick<Clock, "now" | "monotonic">;
  /** Every request to the identity provider goes through it (openid-client's `customFetch`). Default: the global `fetch`. */
  readonly fetch?: CustomFetch;
}

/** RFC 8693's grant type. */
export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";

/** Metadata discovered longer ago than this (monotonic clock) is discovered again. */
export const DISCOVERY_MAX_AGE_MS = 24 * 3600_000;

/**
 * How long (monotonic) a `prepare()` outcome waits for its grant: the lock is taken right
 * after it; a grant much later (the lock failed, another process's login was adopted)
 * looks again instead of using an old failure.
 */
const PREPARED_FOR_MS = 60_000;

/** One token-endpoint exchange: the answer, or a token-free error. */
export type GrantResult =
  | { readonly ok: true; readonly response: TokenEndpointResponse }
  | {
      readonly ok: false;
      /** Token-free (`summarizeFailure`): status, OAuth error code, library code. */
      readonly error: Error;
      /** The provider's `Retry-After` (on any error answer), in ms, capped. */
      readonly retryAfterMs?: number;
      /**
       * The identity provider answered 200 with a new refresh token, but the answer was
       * rejected (e.g. a negative `expires_in`): the old refresh token is consumed now, and
       * this one is the login's only way on.
       */
      readonly rotatedRefreshToken?: string;
    };

export interface OidcAdapter {
  /**
   * `dpop`: the login's DPoP key pair; each request then carries a proof (openid-client's
   * DPoP handle, which answers a `use_dpop_nonce` refusal by sending the request once more
   * with the nonce).
   */
  /** `resource`: a token for that resource server (RFC 8707), else for the configured `resource`. */
  refresh(refreshToken: string, dpop?: CryptoKeyPair, resource?: string): Promise<GrantResult>;
  clientCredentials(dpop?: CryptoKeyPair, resource?: string): Promise<GrantResult>;
  /** An RFC 8693 token exchange with these parameters (subject, actor, target, scope). */
  tokenExchange?(parameters: Readonly<Record<string, string>>): Promise<GrantResult>;
  /**
   * Discovers the provider now unless this process's metadata is fresh: called before the
   * store's lock is taken, so a lock holder waits for the token request alone (and its lease
   * is confirmed closer to it). Never rejects: the outcome, a failure included, is kept for
   * the next grant, which reports it, so discovery is not asked twice.
   */
  prepare?(): Promise<void>;
  /**
   * RFC 7009: revoke these tokens, in order, at the provider's `revocation_endpoint`, with
   * the client's authentication as configured. Never rejects.
   */
  revoke?(tokens: readonly RevocableToken[]): Promise<RevocationResult>;
}

/** A token to revoke, with its `token_type_hint`. */
export interface RevocableToken {
  readonly token: string;
  readonly hint: "refresh_token" | "access_token";
}

/** The outcome of `revoke`: `unsupported` when the provider lists no revocation endpoint; errors token-free. */
export type RevocationResult = { readonly ok: true } | { readonly ok: false; readonly unsupported: boolean; readonly error: Error };

type Fetch = CustomFetch;

/**
 * The user's `fetch` as openid-client calls it: always a promise (a fetch that throws at
 * once rejects like one that fails later), so every failure takes the same token-free path.
 */
function userFetch(given: Fetch | undefined): Fetch {
  if (given === undefined) return (url, init) => fetch(url, init);
  return async (url, init) => given(url, init);
}

type OpenidClient = typeof import("openid-client");
let openidClient: Promise<OpenidClient> | undefined;

/**
 * openid-client, loaded once on first use (a dynamic import: kept as such in the CommonJS
 * build too, so it loads the ESM-only package on every Node version). A failed load is
 * not kept, so the next use tries again.
 */
export function loadOpenidClient(): Promise<OpenidClient> {
  openidClient ??= import("openid-client").catch((error: unknown) => {
    openidClient = undefined;
    throw error;
  });
  return openidClient;
}

/**
 * Discover the issuer with the client's settings applied (timeout, http for loopback), and
 * the client authentication method chosen from what the provider lists. Fails with a
 * `ProviderConfigurationError` when the answer shows the issuer is wrong (see misconfiguration.ts).
 */
export async function discover(options: OidcAdapterOptions, given?: Fetch): Promise<oidc.Configuration> {
  const lib = await loadOpenidClient();
  const fetchImpl = given ?? (options.fetch !== undefined ? userFetch(options.fetch) : undefined);
  const discovered = await lib
    .discovery(new URL(options.issuer), options.clientId, undefined, lib.None(), {
      timeout: timeoutSeconds(options),
      ...(options.allowInsecureRequests ? { execute: [lib.allowInsecureRequests] } : {}),
      ...(fetchImpl !== undefined ? { [lib.customFetch]: fetchImpl as oidc.CustomFetch } : {}),
    })
    .catch((error: unknown) => {
      // A wrong issuer is a ProviderConfigurationError; an outage a failure naming the URL tried.
      throw discoveryFailure(error, options.issuer);
    });
  const server = discovered.serverMetadata();
  if (chooseClientAuthentication(options, server.token_endpoint_auth_methods_supported) === "none") return discovered;
  return configure(lib, { ...server }, options, fetchImpl);
}

/** A Configuration for discovered metadata, with the client authentication chosen for it. */
function configure(lib: OpenidClient, server: oidc.ServerMetadata, options: OidcAdapterOptions, fetchImpl?: Fetch): oidc.Configuration {
  const method = chooseClientAuthentication(options, server.token_endpoint_auth_methods_supported);
  const config = new lib.Configuration(server, options.clientId, undefined, clientAuth(lib, method, options));
  config.timeout = timeoutSeconds(options);
  if (options.allowInsecureRequests) lib.allowInsecureRequests(config);
  if (fetchImpl !== undefined) config[lib.customFetch] = fetchImpl as oidc.CustomFetch;
  return config;
}

function timeoutSeconds(options: OidcAdapterOptions): number {
  // openid-client arms AbortSignal.timeout(seconds * 1000): clamp it to setTimeout's range.
  return Math.min(Math.ceil((options.timeoutMs ?? 10_000) / 1000), Math.floor(MAX_TIMER_MS / 1000));
}

function clientAuth(lib: OpenidClient, method: ClientAuthentication, options: ClientCredentialsOptions): oidc.ClientAuth {
  switch (method) {
    case "client_secret_basic":
      return lib.ClientSecretBasic(options.clientSecret);
    case "client_secret_post":
      return lib.ClientSecretPost(options.clientSecret);
    case "private_key_jwt":
      if (options.clientAssertion !== undefined) return assertionAuth(options.clientAssertion);
      return lib.PrivateKeyJwt(options.clientPrivateKey as CryptoKey | { key: CryptoKey; kid?: string });
    case "none":
      return lib.None();
  }
}

/** RFC 7523 client authentication with a JWT from elsewhere (the platform): asked for anew for every request. */
function assertionAuth(clientAssertion: ClientAssertion): oidc.ClientAuth {
  return (async (_server: oidc.ServerMetadata, client: oidc.ClientMetadata, body: URLSearchParams) => {
    const assertion = await clientAssertion();
    body.set("client_id", client.client_id);
    body.set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    body.set("client_assertion", assertion);
  }) as oidc.ClientAuth;
}

/**
 * The user's `clientAssertion`, checked and watched: a failure is kept in `failures.last`
 * (openid-client wraps whatever a client authentication throws) as a token-free error —
 * our own typed errors as they are, a `ClientAssertionError` for an answer that is no JWT,
 * anything else an `ExchangeFailure` (transient: a platform's token service may come back).
 */
function watchedAssertion(clientAssertion: ClientAssertion, failures: { last: Error | undefined }): ClientAssertion {
  return async () => {
    try {
      const assertion = await clientAssertion();
      if (typeof assertion !== "string" || !isJwtShaped(assertion)) {
        throw new ClientAssertionError("malformed", "`clientAssertion` gave no JWT (three base64url parts): check what it returns");
      }
      return assertion;
    } catch (error) {
      const name = libraryCode(error) ?? (error instanceof Error ? error.name : typeof error);
      failures.last =
        error instanceof ConnectOidcError
          ? error
          : new ExchangeFailure(`\`clientAssertion\` failed (${name})`, { code: "CLIENT_ASSERTION" });
      throw failures.last;
    }
  };
}

/** The provider's metadata as one adapter uses it: discovered by this process, never read from a store. */
interface Metadata {
  readonly config: oidc.Configuration;
  /** Monotonic ms. */
  readonly discoveredAt: number;
}

/** Error codes of a connection that never carried the request (refused, no route, no name, TLS). */
const NOT_SENT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
  "CERT_HAS_EXPIRED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Whether a fetch failure proves the request was never sent (its cause chain, or any of an AggregateError's). */
function neverSent(error: unknown, depth = 0): boolean {
  if (typeof error !== "object" || error === null || depth > 5) return false;
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === "string" && NOT_SENT_CODES.has(code)) return true;
  if (Array.isArray(errors) && errors.length > 0 && errors.every((e) => neverSent(e, depth + 1))) return true;
  return neverSent(cause, depth + 1);
}

/** A token request's `scope` and `resource`; `resource`: for that resource server (RFC 8707) instead of the configured one. */
function tokenParameters(options: OidcAdapterOptions, resource: string | undefined): Record<string, string> {
  const p: Record<string, string> = {};
  if (options.scope !== undefined) p.scope = options.scope;
  const target = resource ?? options.resource;
  if (target !== undefined) p.resource = target;
  return p;
}

type DPoPOptionsFor = (lib: OpenidClient, config: oidc.Configuration, keyPair: CryptoKeyPair | undefined) => oidc.DPoPOptions | undefined;

/** The refresh-token grant, for a resource server (RFC 8707) when `resource` is set. */
function refreshRun(
  options: OidcAdapterOptions,
  refreshToken: string,
  resource: string | undefined,
  dpop: CryptoKeyPair | undefined,
  dpopOptions: DPoPOptionsFor,
) {
  return (lib: OpenidClient, config: oidc.Configuration) =>
    lib.refreshTokenGrant(config, refreshToken, tokenParameters(options, resource), dpopOptions(lib, config, dpop));
}

function clientCredentialsRun(
  options: OidcAdapterOptions,
  resource: string | undefined,
  dpop: CryptoKeyPair | undefined,
  dpopOptions: DPoPOptionsFor,
) {
  return (lib: OpenidClient, config: oidc.Configuration) =>
    lib.clientCredentialsGrant(config, tokenParameters(options, resource), dpopOptions(lib, config, dpop));
}

export function createOidcAdapter(given: OidcAdapterOptions): OidcAdapter {
  // A failure of the client assertion, for the exchange it failed (see watchedAssertion).
  const assertionFailures: { last: Error | undefined } = { last: undefined };
  const options: OidcAdapterOptions =
    given.clientAssertion === undefined ? given : { ...given, clientAssertion: watchedAssertion(given.clientAssertion, assertionFailures) };
  const wallNow = () => options.clock?.now() ?? Date.now();
  const monotonicNow = () => options.clock?.monotonic?.() ?? options.clock?.now() ?? performance.now();
  // What openid-client's errors do not carry: the refresh token of a 200 token-endpoint
  // answer it then rejected, an error answer's Retry-After, and whether the token request
  // left at all. Read before openid-client sees the answer; the manager runs one exchange
  // at a time per adapter.
  let answeredRefreshToken: string | undefined;
  let answeredRetryAfter: string | null = null;
  /** "none": no token request made; "not-processed": refused before it was sent, or 404/405. */
  let tokenAttempt: "none" | "not-processed" | "sent" = "none";
  const tokenRequestTaken = () => tokenAttempt === "sent";
  const send = userFetch(options.fetch);
  const watchingFetch: Fetch = async (url, init) => {
    const tokenRequest = init.method === "POST" && String(init.body).includes("grant_type=");
    let response: Response;
    try {
      response = await send(url, init);
    } catch (error) {
      if (tokenRequest) tokenAttempt = neverSent(error) ? "not-processed" : "sent";
      throw error;
    }
    if (!tokenRequest) return response;
    // 404 / 405: no token endpoint there (it moved); nothing was granted.
    tokenAttempt = response.status === 404 || response.status === 405 ? "not-processed" : "sent";
    if (response.status !== 200) answeredRetryAfter = response.headers.get("retry-after");
    if (response.status === 200) {
      const body = (await response
        .clone()
        .json()
        .catch(() => undefined)) as { refresh_token?: unknown } | undefined;
      if (isTokenString(body?.refresh_token)) answeredRefreshToken = body.refresh_token;
    }
    return response;
  };

  let current: Metadata | undefined;
  const discoverNow = async (): Promise<Metadata> => {
    const discoveredAt = monotonicNow();
    return { config: await discover(options, watchingFetch), discoveredAt };
  };
  /** The metadata for the next exchange (this process's discovery), and whether it was discovered for it. */
  const metadataFor = async (): Promise<{ metadata: Metadata; discovered: boolean }> => {
    if (current !== undefined && monotonicNow() - current.discoveredAt < DISCOVERY_MAX_AGE_MS) {
      return { metadata: current, discovered: false };
    }
    current = undefined;
    current = await discoverNow();
    return { metadata: current, discovered: true };
  };

  /** What `prepare()` found, for the grant that follows it (kept briefly: see PREPARED_FOR_MS). */
  let prepared: { at: number; outcome: Promise<{ metadata: Metadata; discovered: boolean }> } | undefined;
  const prepare = async () => {
    if (current !== undefined && monotonicNow() - current.discoveredAt < DISCOVERY_MAX_AGE_MS) return;
    const outcome = metadataFor();
    prepared = { at: monotonicNow(), outcome };
    await outcome.catch(() => undefined);
  };
  /** This exchange's metadata: what `prepare()` just found (success or failure), else this process's own. */
  const metadataForGrant = () => {
    const taken = prepared;
    prepared = undefined;
    return taken !== undefined && monotonicNow() - taken.at < PREPARED_FOR_MS ? taken.outcome : metadataFor();
  };

  type Run = (lib: OpenidClient, config: oidc.Configuration) => Promise<oidc.TokenEndpointResponse>;
  /** A failure before any exchange (discovery, loading openid-client): token-free. */
  const failed = (error: unknown): GrantResult => ({ ok: false, error: summarizeFailure(error) });
  /**
   * Run one exchange; a failure leaves as a token-free summary (its cause chain may hold the
   * response body). `notProcessed`: the failure proves no token endpoint took the request.
   */
  const exchange = async (metadata: Metadata, run: Run): Promise<{ result: GrantResult; notProcessed: boolean }> => {
    answeredRefreshToken = undefined;
    answeredRetryAfter = null;
    tokenAttempt = "none";
    assertionFailures.last = undefined;
    try {
      const response = await run(await loadOpenidClient(), metadata.config);
      return { result: { ok: true, response: { ...response } as TokenEndpointResponse }, notProcessed: false };
    } catch (error) {
      // No request left without its assertion: the assertion's own error, not openid-client's wrapper.
      if (assertionFailures.last !== undefined) return { result: { ok: false, error: assertionFailures.last }, notProcessed: false };
      const rotated = answeredRefreshToken;
      const retryAfter = retryAfterMs(answeredRetryAfter, wallNow());
      const result: GrantResult = {
        ok: false,
        error: summarizeFailure(error),
        ...(rotated !== undefined ? { rotatedRefreshToken: rotated } : {}),
        ...(retryAfter !== undefined ? { retryAfterMs: retryAfter } : {}),
      };
      return { result, notProcessed: !tokenRequestTaken() && rotated === undefined };
    } finally {
      answeredRefreshToken = undefined;
      answeredRetryAfter = null;
    }
  };
  const grant = async (run: Run): Promise<GrantResult> => {
    let chosen: { metadata: Metadata; discovered: boolean };
    try {
      chosen = await metadataForGrant();
    } catch (error) {
      return failed(error);
    }
    const first = await exchange(chosen.metadata, run);
    // The refresh token (or the client's credentials) was not presented to a token endpoint
    // that took it, with metadata discovered earlier: the endpoint may have moved. Ask again,
    // once, with fresh metadata. Any other failure may have consumed the refresh token:
    // never present it twice.
    if (first.result.ok || chosen.discovered || !first.notProcessed) return first.result;
    try {
      current = await discoverNow();
    } catch {
      current = chosen.metadata;
      return first.result;
    }
    return (await exchange(current, run)).result;
  };

  const dpopOptions = dpopOptionsCache();
  return {
    refresh: (refreshToken, dpop, resource) => grant(refreshRun(options, refreshToken, resource, dpop, dpopOptions)),
    clientCredentials: (dpop, resource) => grant(clientCredentialsRun(options, resource, dpop, dpopOptions)),
    tokenExchange: (exchangeParameters) =>
      grant((lib, config) => lib.genericGrantRequest(config, TOKEN_EXCHANGE_GRANT, { ...exchangeParameters })),
    prepare,
    revoke: revokerFor(metadataFor),
  };
}

/**
 * One DPoP handle per key pair and configuration: it keeps the identity provider's nonce,
 * and starts with the one the login (or an earlier manager) of this process learned.
 */
function dpopOptionsCache() {
  let dpopHandle: { config: oidc.Configuration; keyPair: CryptoKeyPair; options: oidc.DPoPOptions } | undefined;
  return (lib: OpenidClient, config: oidc.Configuration, keyPair: CryptoKeyPair | undefined) => {
    if (keyPair === undefined) return undefined;
    if (dpopHandle?.config !== config || dpopHandle.keyPair !== keyPair) {
      dpopHandle = { config, keyPair, options: { DPoP: idpDPoPHandle(lib, config, keyPair) } };
    }
    return dpopHandle.options;
  };
}

/** `revoke` over this process's discovered metadata; a failed discovery is a failed revocation. */
function revokerFor(metadataFor: () => Promise<{ metadata: Metadata }>): NonNullable<OidcAdapter["revoke"]> {
  return (tokens) =>
    metadataFor().then(
      ({ metadata }) => revokeAt(metadata.config, tokens),
      (error: unknown): RevocationResult => ({ ok: false, unsupported: false, error: summarizeFailure(error) }),
    );
}

/** Revoke each token in turn at the discovered revocation endpoint; the first failure ends it. */
async function revokeAt(config: oidc.Configuration, tokens: readonly RevocableToken[]): Promise<RevocationResult> {
  if (config.serverMetadata().revocation_endpoint === undefined) {
    return { ok: false, unsupported: true, error: new ExchangeFailure("the identity provider lists no revocation_endpoint", {}) };
  }
  try {
    const lib = await loadOpenidClient();
    let revoked = 0;
    for (const { token, hint } of tokens) {
      revoked += await lib.tokenRevocation(config, token, { token_type_hint: hint }).then(
        () => 1,
        (error: unknown) => {
          // RFC 7009 §2.2.1: a provider that cannot revoke access tokens (JWTs: they expire by
          // themselves) says `unsupported_token_type`; the login ends with its refresh token.
          if (hint !== "access_token" || failureFacts(error).error !== "unsupported_token_type") throw error;
          return 0;
        },
      );
    }
    if (revoked > 0) return { ok: true };
    return { ok: false, unsupported: true, error: new ExchangeFailure("the identity provider cannot revoke these access tokens", {}) };
  } catch (error) {
    // openid-client's error may carry the request (the token): only the summary leaves.
    return { ok: false, unsupported: false, error: summarizeFailure(error) };
  }
}

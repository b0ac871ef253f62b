/**
 * The OIDC adapter: every exchange with the identity provider, through openid-client.
 * Discovery happens once per adapter (retried after a failure).
 *
 * openid-client (with its OAuth and JOSE layers) is loaded on first use: a process whose
 * stored token is valid never needs it, and a short-lived one would pay for it on every start.
 */
import type * as oidc from "openid-client";
import { type ClientAuthentication, type ClientCredentialsOptions, chooseClientAuthentication } from "./client-auth.js";
import { summarizeFailure } from "./failure.js";
import { retryAfterMs } from "./policy.js";
import type { TokenEndpointResponse } from "./types.js";

export interface OidcAdapterOptions extends ClientCredentialsOptions {
  readonly issuer: string | URL;
  readonly clientId: string;
  readonly scope?: string;
  readonly resource?: string;
  readonly timeoutMs?: number;
  readonly allowInsecureRequests?: boolean;
}

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
  refresh(refreshToken: string): Promise<GrantResult>;
  clientCredentials(): Promise<GrantResult>;
}

type Fetch = (url: string, init: RequestInit) => Promise<Response>;

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
 * the client authentication method chosen from what the provider lists.
 */
export async function discover(options: OidcAdapterOptions, fetchImpl?: Fetch): Promise<oidc.Configuration> {
  const oidc = await loadOpenidClient();
  const timeout = Math.ceil((options.timeoutMs ?? 10_000) / 1000);
  const discovered = await oidc.discovery(new URL(options.issuer), options.clientId, undefined, oidc.None(), {
    timeout,
    ...(options.allowInsecureRequests ? { execute: [oidc.allowInsecureRequests] } : {}),
    ...(fetchImpl !== undefined ? { [oidc.customFetch]: fetchImpl as oidc.CustomFetch } : {}),
  });
  const server = discovered.serverMetadata();
  const method = chooseClientAuthentication(options, server.token_endpoint_auth_methods_supported);
  if (method === "none") return discovered;
  const config = new oidc.Configuration({ ...server }, options.clientId, undefined, clientAuth(oidc, method, options));
  config.timeout = timeout;
  if (options.allowInsecureRequests) oidc.allowInsecureRequests(config);
  if (fetchImpl !== undefined) config[oidc.customFetch] = fetchImpl as oidc.CustomFetch;
  return config;
}

function clientAuth(oidc: OpenidClient, method: ClientAuthentication, options: ClientCredentialsOptions): oidc.ClientAuth {
  switch (method) {
    case "client_secret_basic":
      return oidc.ClientSecretBasic(options.clientSecret);
    case "client_secret_post":
      return oidc.ClientSecretPost(options.clientSecret);
    case "private_key_jwt":
      return oidc.PrivateKeyJwt(options.clientPrivateKey as CryptoKey | { key: CryptoKey; kid?: string });
    case "none":
      return oidc.None();
  }
}

export function createOidcAdapter(options: OidcAdapterOptions): OidcAdapter {
  // What openid-client's errors do not carry: the refresh token of a 200 token-endpoint
  // answer it then rejected, and an error answer's Retry-After. Read before openid-client
  // sees the answer; the manager runs one exchange at a time per adapter.
  let answeredRefreshToken: string | undefined;
  let answeredRetryAfter: string | null = null;
  const watchingFetch: Fetch = async (url, init) => {
    const response = await fetch(url, init);
    const tokenRequest = init.method === "POST" && String(init.body).includes("grant_type=");
    if (tokenRequest && response.status !== 200) answeredRetryAfter = response.headers.get("retry-after");
    if (tokenRequest && response.status === 200) {
      const body = (await response
        .clone()
        .json()
        .catch(() => undefined)) as { refresh_token?: unknown } | undefined;
      if (typeof body?.refresh_token === "string" && body.refresh_token !== "") answeredRefreshToken = body.refresh_token;
    }
    return response;
  };
  let configuration: Promise<oidc.Configuration> | undefined;
  const config = () => {
    configuration ??= discover(options, watchingFetch).catch((error: unknown) => {
      configuration = undefined;
      throw error;
    });
    return configuration;
  };
  const parameters = () => {
    const p: Record<string, string> = {};
    if (options.scope !== undefined) p.scope = options.scope;
    if (options.resource !== undefined) p.resource = options.resource;
    return p;
  };
  /** Run one exchange; a failure leaves as a token-free summary (its cause chain may hold the response body). */
  const exchange = async (run: () => Promise<oidc.TokenEndpointResponse>): Promise<GrantResult> => {
    answeredRefreshToken = undefined;
    answeredRetryAfter = null;
    try {
      return { ok: true, response: { ...(await run()) } as TokenEndpointResponse };
    } catch (error) {
      const rotated = answeredRefreshToken;
      const retryAfter = retryAfterMs(answeredRetryAfter, Date.now());
      return {
        ok: false,
        error: summarizeFailure(error),
        ...(rotated !== undefined ? { rotatedRefreshToken: rotated } : {}),
        ...(retryAfter !== undefined ? { retryAfterMs: retryAfter } : {}),
      };
    } finally {
      answeredRefreshToken = undefined;
      answeredRetryAfter = null;
    }
  };
  return {
    refresh: (refreshToken) =>
      exchange(async () => (await loadOpenidClient()).refreshTokenGrant(await config(), refreshToken, parameters())),
    clientCredentials: () => exchange(async () => (await loadOpenidClient()).clientCredentialsGrant(await config(), parameters())),
  };
}

/**
 * The OIDC adapter: every exchange with the identity provider, through openid-client.
 * Discovery happens once per adapter (retried after a failure).
 */
import * as oidc from "openid-client";
import { summarizeFailure } from "./failure.js";
import type { TokenEndpointResponse } from "./types.js";

export interface OidcAdapterOptions {
  readonly issuer: string | URL;
  readonly clientId: string;
  readonly clientSecret?: string;
  readonly scope?: string;
  readonly resource?: string;
  readonly timeoutMs?: number;
  readonly allowInsecureRequests?: boolean;
}

export interface OidcAdapter {
  refresh(refreshToken: string): Promise<TokenEndpointResponse>;
  clientCredentials(): Promise<TokenEndpointResponse>;
}

/** Discover the issuer with the client's settings applied (timeout, http for loopback). */
export async function discover(options: OidcAdapterOptions): Promise<oidc.Configuration> {
  const timeout = Math.ceil((options.timeoutMs ?? 10_000) / 1000);
  const config = await oidc.discovery(
    new URL(options.issuer),
    options.clientId,
    undefined,
    options.clientSecret === undefined ? oidc.None() : oidc.ClientSecretBasic(options.clientSecret),
    {
      timeout,
      ...(options.allowInsecureRequests ? { execute: [oidc.allowInsecureRequests] } : {}),
    },
  );
  return config;
}

export function createOidcAdapter(options: OidcAdapterOptions): OidcAdapter {
  let configuration: Promise<oidc.Configuration> | undefined;
  const config = () => {
    configuration ??= discover(options).catch((error: unknown) => {
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
  return {
    refresh(refreshToken) {
      return exchange(async () => oidc.refreshTokenGrant(await config(), refreshToken, parameters()));
    },
    clientCredentials() {
      return exchange(async () => oidc.clientCredentialsGrant(await config(), parameters()));
    },
  };
}

// openid-client adds helper methods to the response; keep only the data.
function plain(response: oidc.TokenEndpointResponse): TokenEndpointResponse {
  return { ...response } as TokenEndpointResponse;
}

/** Run one exchange; a failure leaves as a token-free summary (its cause chain may hold the response body). */
async function exchange(run: () => Promise<oidc.TokenEndpointResponse>): Promise<TokenEndpointResponse> {
  try {
    return plain(await run());
  } catch (error) {
    throw summarizeFailure(error);
  }
}

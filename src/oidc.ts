/**
 * The OIDC adapter: every exchange with the identity provider, through openid-client.
 * Discovery happens once per adapter (retried after a failure).
 */
import * as oidc from "openid-client";
import { ConnectOidcError } from "./errors.js";
import type { FailureFacts } from "./policy.js";
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
    async refresh(refreshToken) {
      return plain(await oidc.refreshTokenGrant(await config(), refreshToken, parameters()));
    },
    async clientCredentials() {
      return plain(await oidc.clientCredentialsGrant(await config(), parameters()));
    },
  };
}

// openid-client adds helper methods to the response; keep only the data.
function plain(response: oidc.TokenEndpointResponse): TokenEndpointResponse {
  return { ...response } as TokenEndpointResponse;
}

/** What the policy needs to know of a failed exchange: the HTTP status and OAuth error code. */
export function failureFacts(error: unknown): FailureFacts {
  if (typeof error !== "object" || error === null) return {};
  const e = error as { status?: unknown; error?: unknown; cause?: unknown; code?: unknown };
  let status = typeof e.status === "number" ? e.status : undefined;
  let code = typeof e.error === "string" ? e.error : undefined;
  // A 401 with WWW-Authenticate carries its error in the parsed challenges.
  if (code === undefined && Array.isArray(e.cause)) {
    for (const challenge of e.cause as { parameters?: { error?: string } }[]) {
      code ??= challenge?.parameters?.error;
    }
  }
  // A non-conforming answer (e.g. an HTML 503) carries the Response as its cause.
  if (status === undefined && e.cause instanceof Response) status = e.cause.status;
  return { ...(status !== undefined ? { status } : {}), ...(code !== undefined ? { error: code } : {}) };
}

/** A short, token-free description of a failed exchange for error messages. */
export function describeFailure(error: unknown): string {
  // Our own errors (a store or lock failure) already say what happened, token-free.
  if (error instanceof ConnectOidcError) return error.message;
  const facts = failureFacts(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "OAUTH_TIMEOUT" || (error as Error | null)?.name === "TimeoutError") return "the identity provider did not answer in time";
  if (facts.error !== undefined) return `the identity provider answered ${facts.status ?? "with"} ${facts.error}`;
  if (facts.status !== undefined) return `the identity provider answered HTTP ${facts.status}`;
  if (error instanceof TypeError) return "the identity provider could not be reached";
  return "the token request failed";
}

/**
 * oidc-provider's configuration for a test identity provider: the registered clients, JWT
 * access tokens for one audience (RFC 8707 resource indicators, RFC 9068 `at+jwt`), refresh
 * tokens always issued and rotating, the device flow with bare pages, revocation, DPoP when
 * asked, opaque tokens with introspection when asked, and no interaction pages
 * (interactions.ts approves headlessly).
 */
import type { ClientMetadata, Configuration } from "oidc-provider";
import type { ProviderModule } from "./provider-module.js";

/** The asymmetric JWS algorithms accepted in DPoP proofs. */
const DPOP_SIGNING_ALGORITHMS = ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "Ed25519", "EdDSA"];

export interface ClientSecrets {
  readonly serviceSecret: string;
  readonly postSecret: string;
  /** The private_key_jwt client's public key, as a JWK with its `kid`. */
  readonly jwtClientJwk: JsonWebKey & { readonly kid: string };
}

export interface ConfigurationInput {
  readonly errors: ProviderModule["errors"];
  readonly signingJwk: JsonWebKey & { readonly kid: string };
  readonly cookieKey: string;
  readonly dpopNonceSecret: Uint8Array;
  readonly secrets: ClientSecrets;
  readonly adapter: Configuration["adapter"];
  readonly accessTokenTtl: number;
  readonly refreshTokenTtl: number;
  readonly audience: string;
  /** More resource servers besides `audience` (RFC 8707): each its own `aud`. */
  readonly resources: readonly string[];
  readonly apiScopes: readonly string[];
  readonly rotateRefreshTokens: boolean;
  /** Opaque access tokens and RFC 7662 introspection instead of JWT access tokens. */
  readonly opaqueAccessTokens: boolean;
  /** undefined: DPoP off (a proof is ignored, every token is a bearer token). */
  readonly dpop: { readonly requireNonce: boolean } | undefined;
  readonly requireNonce: boolean;
  readonly exactRedirectUris: readonly string[] | undefined;
  readonly clientAuthMethods: readonly string[] | undefined;
  /** A private_key_jwt client trusting another issuer's keys (workload identity). */
  readonly workloadClient: { readonly jwksUri: string; readonly signingAlg?: string } | undefined;
  /** Confidential clients may use RFC 8693 token exchange (registered by exchange-grant.ts). */
  readonly tokenExchange: boolean;
}

function confidential(
  clientId: string,
  method: NonNullable<ClientMetadata["token_endpoint_auth_method"]>,
  extra: Partial<ClientMetadata>,
  tokenExchange: boolean,
): ClientMetadata {
  return {
    client_id: clientId,
    token_endpoint_auth_method: method,
    grant_types: tokenExchange ? ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"] : ["client_credentials"],
    response_types: [],
    redirect_uris: [],
    ...extra,
  };
}

function clientsOf(input: ConfigurationInput): ClientMetadata[] {
  const methods = input.clientAuthMethods;
  const allowed = (method: string) => methods === undefined || methods.includes(method);
  const clients: ClientMetadata[] = [
    {
      client_id: "test-cli",
      application_type: "native",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
      response_types: ["code"],
      redirect_uris: ["http://127.0.0.1/callback"],
    },
  ];
  const { secrets, tokenExchange } = input;
  if (allowed("client_secret_basic"))
    clients.push(confidential("test-service", "client_secret_basic", { client_secret: secrets.serviceSecret }, tokenExchange));
  if (allowed("client_secret_post")) {
    clients.push(confidential("test-service-post", "client_secret_post", { client_secret: secrets.postSecret }, tokenExchange));
    // A confidential app with user logins (its refresh tokens are revoked with its secret: sign-out tests).
    clients.push({
      client_id: "test-app-post",
      application_type: "native",
      token_endpoint_auth_method: "client_secret_post",
      client_secret: secrets.postSecret,
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      redirect_uris: ["http://127.0.0.1/callback"],
    });
  }
  if (allowed("private_key_jwt")) {
    const jwk = { ...secrets.jwtClientJwk, alg: "ES256", use: "sig" };
    const jwks = { keys: [jwk] };
    clients.push(confidential("test-service-jwt", "private_key_jwt", { token_endpoint_auth_signing_alg: "ES256", jwks }, tokenExchange));
  }
  const workload = input.workloadClient;
  if (workload !== undefined && allowed("private_key_jwt")) {
    const metadata: Partial<ClientMetadata> = {
      token_endpoint_auth_signing_alg: (workload.signingAlg ?? "RS256") as ClientMetadata["token_endpoint_auth_signing_alg"],
      jwks_uri: workload.jwksUri,
    };
    clients.push(confidential("test-workload", "private_key_jwt", metadata, tokenExchange));
  }
  if (input.exactRedirectUris !== undefined) {
    clients.push({
      client_id: "test-cli-exact",
      application_type: "web",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      redirect_uris: [...input.exactRedirectUris],
    });
  }
  return clients;
}

/** A validator on `nonce` runs in the authorization endpoint after the redirect URI check: its error is redirected back. */
function nonceRequired(errors: ProviderModule["errors"]): Configuration["extraParams"] {
  return {
    nonce: (ctx, value) => {
      if (ctx.oidc.route !== "authorization") return;
      const scope = String(ctx.oidc.params?.scope ?? "").split(" ");
      if (scope.includes("openid") && !value) throw new errors.InvalidRequest("nonce is required with the openid scope");
    },
  };
}

function featuresOf(input: ConfigurationInput): NonNullable<Configuration["features"]> {
  const { audience, errors } = input;
  const html = (body: string) => `<!DOCTYPE html><html><body>${body}</body></html>`;
  return {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: input.dpop
      ? { enabled: true, nonceSecret: Buffer.from(input.dpopNonceSecret), requireNonce: () => input.dpop?.requireNonce === true }
      : { enabled: false },
    revocation: { enabled: true, allowedPolicy: async () => true },
    introspection: { enabled: input.opaqueAccessTokens },
    deviceFlow: {
      enabled: true,
      // Bare forms: the device approval reads their hidden inputs.
      userCodeInputSource: async (ctx, form) => {
        ctx.body = html(form);
      },
      userCodeConfirmSource: async (ctx, form) => {
        ctx.body = html(form);
      },
      successSource: async (ctx) => {
        ctx.body = html("device approved");
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => audience,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== audience && !input.resources.includes(resourceIndicator)) throw new errors.InvalidTarget();
        return {
          scope: input.apiScopes.join(" "),
          audience: resourceIndicator,
          accessTokenTTL: input.accessTokenTtl,
          ...(input.opaqueAccessTokens ? { accessTokenFormat: "opaque" } : { accessTokenFormat: "jwt", jwt: { sign: { alg: "RS256" } } }),
        };
      },
    },
  };
}

function isLoopback(url: string | URL | Request): boolean {
  const host = new URL(url instanceof Request ? url.url : url).hostname;
  return host === "127.0.0.1" || host === "[::1]" || host === "localhost";
}

export function providerConfiguration(input: ConfigurationInput): Configuration {
  const ttl = () => input.accessTokenTtl;
  const methods = input.clientAuthMethods;
  return {
    adapter: input.adapter,
    jwks: { keys: [{ ...input.signingJwk, alg: "RS256", use: "sig" }] },
    cookies: { keys: [input.cookieKey] },
    clients: clientsOf(input),
    ...(methods !== undefined ? { clientAuthMethods: [...methods] as Configuration["clientAuthMethods"] } : {}),
    scopes: ["openid", "offline_access"],
    ...(input.requireNonce ? { extraParams: nonceRequired(input.errors) } : {}),
    ...(input.dpop
      ? {
          enabledJWA: { dPoPSigningAlgValues: DPOP_SIGNING_ALGORITHMS as NonNullable<Configuration["enabledJWA"]>["dPoPSigningAlgValues"] },
        }
      : {}),
    // oidc-provider refuses to fetch from special-use addresses (SSRF protection): a test's
    // second issuer (the workload client's jwks_uri) lives on loopback, so loopback is let through.
    fetch: (url, options) => {
      if (!isLoopback(url)) return globalThis.fetch(url, options);
      const { dispatcher: _ssrfCheck, ...rest } = options as RequestInit & { dispatcher?: unknown };
      return globalThis.fetch(url, rest);
    },
    // A token exchange's actor (exchange-grant.ts) becomes the `act` claim (RFC 8693 §4.1).
    extraTokenClaims: async (_ctx, token) => {
      const actor = (token as { exchangeActor?: unknown }).exchangeActor;
      return typeof actor === "string" ? { act: { sub: actor } } : undefined;
    },
    pkce: { required: () => true },
    // `profile` and `email` (asked for by scope) put these in the ID token too, as many
    // providers do: a login then knows who it is (tokens.status()).
    findAccount: async (_ctx, id) => ({
      accountId: id,
      claims: () => ({ sub: id, name: "Test User", email: `${id}@example.test`, preferred_username: id }),
    }),
    claims: { openid: ["sub"], profile: ["name", "preferred_username"], email: ["email"] },
    conformIdTokenClaims: false,
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
    rotateRefreshToken: input.rotateRefreshTokens,
    // Refresh tokens outlive the browser session, with or without offline_access.
    expiresWithSession: async () => false,
    clientBasedCORS: () => true,
    renderError: async (ctx, out) => {
      ctx.type = "json";
      ctx.body = out;
    },
    ttl: {
      AccessToken: ttl,
      ClientCredentials: ttl,
      IdToken: 3600,
      RefreshToken: () => input.refreshTokenTtl,
      Grant: input.refreshTokenTtl,
      Session: input.refreshTokenTtl,
      Interaction: 600,
      DeviceCode: 600,
      AuthorizationCode: 60,
    },
    features: featuresOf(input),
  };
}

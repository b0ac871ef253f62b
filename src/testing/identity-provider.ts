/**
 * `startTestIdentityProvider`: a real OpenID provider (oidc-provider) on 127.0.0.1, started
 * with one call, for integration tests: its keys, clients and listener, the headless login,
 * the knobs of its token endpoint, revocation and shutdown. The parts live beside it:
 * provider-configuration.ts (what it issues), token-endpoint.ts (knobs), interactions.ts and
 * headless-login.ts (the user's side).
 */
import { generateKeyPair as generateNodeKeyPair, randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import type Provider from "oidc-provider";
import * as oidc from "openid-client";
import { registerExchangeGrant } from "./exchange-grant.js";
import { decideDeviceCode, headlessLogin } from "./headless-login.js";
import type { TestIdentityProvider, TestIdentityProviderOptions } from "./identity-provider-types.js";
import { providerHandler } from "./interactions.js";
import { providerConfiguration } from "./provider-configuration.js";
import { loadProviderModule, type ProviderModule } from "./provider-module.js";
import { createProviderStorage, type ProviderStorage } from "./provider-storage.js";
import { installTokenEndpointKnobs } from "./token-endpoint.js";

const DEFAULT_AUDIENCE = "urn:connect-oidc:test";
const DEFAULT_ACCOUNT = "test-user";

/** Listens on a loopback port first (the issuer needs the port); the handler comes later. */
async function listenOnLoopback(): Promise<{ server: http.Server; issuer: string; handle(listener: http.RequestListener): void }> {
  let handler: http.RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    issuer: `http://127.0.0.1:${port}`,
    handle(listener) {
      handler = listener;
    },
  };
}

type Keys = Awaited<ReturnType<typeof createKeys>>;

async function createKeys() {
  const rsa = await promisify(generateNodeKeyPair)("rsa", { modulusLength: 2048 });
  const signingJwk = { ...(rsa.privateKey.export({ format: "jwk" }) as JsonWebKey), kid: randomUUID() };
  const jwtClientKeys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const jwtClientJwk = { ...(await crypto.subtle.exportKey("jwk", jwtClientKeys.publicKey)), kid: randomUUID() };
  return { signingJwk, jwtClientKeys, jwtClientJwk };
}

/** Ends every login of `grantIds`: tokens, codes and the grant itself. */
async function revokeGrants(provider: Provider, grantIds: readonly string[]): Promise<void> {
  for (const grantId of grantIds) {
    await Promise.all([
      provider.AccessToken.revokeByGrantId(grantId),
      provider.RefreshToken.revokeByGrantId(grantId),
      provider.AuthorizationCode.revokeByGrantId(grantId),
      provider.DeviceCode.revokeByGrantId(grantId),
      provider.Grant.adapter.destroy(grantId),
    ]);
  }
}

/**
 * Starts an in-process OpenID provider on a free loopback port.
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 * import { startTestIdentityProvider } from "connect-oidc/testing";
 *
 * await using idp = await startTestIdentityProvider({ accessTokenTtl: 5, dpop: { requireNonce: true } });
 * using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, dpop: true, allowInsecureRequests: true });
 * await tokens.setTokens(await idp.login({ dpop: true }));
 * ```
 */
export async function startTestIdentityProvider(options: TestIdentityProviderOptions = {}): Promise<TestIdentityProvider> {
  const providerModule = await loadProviderModule();
  const accountId = options.accountId ?? DEFAULT_ACCOUNT;
  const audience = options.audience ?? DEFAULT_AUDIENCE;
  const apiScopes = [...(options.apiScopes ?? ["api"])];
  const keys = await createKeys();
  const clients = testClients(keys);
  const { serviceClient, postClient, jwtClient } = clients;

  const listener = await listenOnLoopback();
  const { issuer, server } = listener;
  const storage = createProviderStorage();
  const provider = createProvider(providerModule, issuer, { options, keys, clients, storage, audience, apiScopes });
  setDeviceCodeInterval(provider, options.deviceCodeInterval ?? 1);
  const knobs = installTokenEndpointKnobs(provider);
  listener.handle(providerHandler(provider, { accountId, audience, apiScopes }));

  const configs = clientConfigs(issuer, serviceClient);
  const verificationUri = new URL(provider.urlFor("code_verification")).href;
  const close = closeOnce(server);

  return {
    issuer,
    clientId: "test-cli",
    serviceClient,
    postClient,
    jwtClient,
    exactClientId: "test-cli-exact",
    workloadClientId: "test-workload",
    audience,
    apiScopes,
    accountId,
    jwksUri: new URL(provider.urlFor("jwks")).href,
    provider,
    get stats() {
      return knobs.stats;
    },
    resetStats: knobs.resetStats,
    login: async (loginOptions) =>
      headlessLogin(await configs.cli(), `openid offline_access ${apiScopes.join(" ")}`, {
        ...(options.resources?.length ? { resource: [audience, ...options.resources] } : {}),
        ...loginOptions,
      }),
    cliConfig: configs.cli,
    serviceConfig: configs.service,
    approveDeviceCode: (userCode) => decideDeviceCode(verificationUri, userCode, "confirm"),
    denyDeviceCode: (userCode) => decideDeviceCode(verificationUri, userCode, "abort"),
    async revokeLogin(refreshToken) {
      if (refreshToken === undefined) return revokeGrants(provider, storage.grantIds());
      const token = await provider.RefreshToken.find(refreshToken, { ignoreExpiration: true });
      return revokeGrants(provider, token?.grantId ? [token.grantId] : []);
    },
    setTokenLatency: knobs.setLatency,
    setTokenOutage: knobs.setOutage,
    rewriteTokenResponse: knobs.rewrite,
    setTokenTransportFault: knobs.setTransportFault,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The confidential clients, one per way of authenticating: fresh secrets and keys per provider. */
function testClients(keys: Keys) {
  return {
    serviceClient: { clientId: "test-service" as const, clientSecret: randomBytes(24).toString("base64url") },
    postClient: { clientId: "test-service-post" as const, clientSecret: `a-b_c.d~e-${randomBytes(12).toString("base64url")}` },
    jwtClient: { clientId: "test-service-jwt" as const, privateKey: keys.jwtClientKeys.privateKey, kid: keys.jwtClientJwk.kid },
  };
}

/** What the provider is made of besides its issuer. */
interface ProviderParts {
  readonly options: TestIdentityProviderOptions;
  readonly keys: Keys;
  readonly clients: ReturnType<typeof testClients>;
  readonly storage: ProviderStorage;
  readonly audience: string;
  readonly apiScopes: readonly string[];
}

function createProvider({ default: ProviderClass, errors }: ProviderModule, issuer: string, parts: ProviderParts): Provider {
  const { options, keys, clients } = parts;
  const dpop =
    options.dpop === false ? undefined : { requireNonce: typeof options.dpop === "object" && options.dpop.requireNonce === true };
  const provider = new ProviderClass(
    issuer,
    providerConfiguration({
      errors,
      signingJwk: keys.signingJwk,
      cookieKey: randomBytes(32).toString("base64url"),
      dpopNonceSecret: randomBytes(32),
      secrets: {
        serviceSecret: clients.serviceClient.clientSecret,
        postSecret: clients.postClient.clientSecret,
        jwtClientJwk: keys.jwtClientJwk,
      },
      adapter: parts.storage.factory,
      accessTokenTtl: options.accessTokenTtl ?? 5,
      refreshTokenTtl: options.refreshTokenTtl ?? 24 * 60 * 60,
      audience: parts.audience,
      resources: options.resources ?? [],
      apiScopes: parts.apiScopes,
      rotateRefreshTokens: options.rotateRefreshTokens ?? true,
      opaqueAccessTokens: options.opaqueAccessTokens === true,
      dpop,
      requireNonce: options.requireNonce ?? false,
      exactRedirectUris: options.exactRedirectUris,
      clientAuthMethods: options.clientAuthMethods,
      workloadClient: options.workloadClient,
      tokenExchange: options.tokenExchange !== undefined,
    }),
  );
  if (options.tokenExchange !== undefined) {
    const { d: _private, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = keys.signingJwk as JsonWebKey & Record<string, unknown>;
    registerExchangeGrant(provider, {
      errors,
      publicJwk,
      targets: options.tokenExchange.targets,
      scopes: parts.apiScopes,
      accessTokenTtl: options.accessTokenTtl ?? 5,
    });
  }
  return provider;
}

/** openid-client configurations of the public and the service client, discovered on first use. */
function clientConfigs(issuer: string, serviceClient: { readonly clientId: string; readonly clientSecret: string }) {
  const discoveryOptions = { execute: [oidc.allowInsecureRequests] };
  let cli: Promise<oidc.Configuration> | undefined;
  let service: Promise<oidc.Configuration> | undefined;
  return {
    cli: () => (cli ??= oidc.discovery(new URL(issuer), "test-cli", undefined, oidc.None(), discoveryOptions)),
    service: () =>
      (service ??= oidc.discovery(
        new URL(issuer),
        serviceClient.clientId,
        undefined,
        oidc.ClientSecretBasic(serviceClient.clientSecret),
        discoveryOptions,
      )),
  };
}

/** Stops listening and drops every connection; later calls share the first one's promise. */
function closeOnce(server: http.Server): () => Promise<void> {
  let closed: Promise<void> | undefined;
  return () =>
    (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }));
}

/** oidc-provider sends no `interval` in device authorization answers; openid-client then polls every 5 s. */
function setDeviceCodeInterval(provider: Provider, seconds: number): void {
  const path = new URL(provider.urlFor("device_authorization")).pathname;
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === path && ctx.status === 200 && ctx.body && typeof ctx.body === "object") {
      (ctx.body as { interval?: number }).interval = seconds;
    }
  });
}

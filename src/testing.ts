/**
 * Node-only: what an integration test of a Connect client or server needs, in-process.
 * `startTestIdentityProvider` starts a real OpenID provider (oidc-provider, an optional peer
 * dependency: install `oidc-provider` as a dev dependency to use this entry point) with
 * short-lived JWT access tokens, rotating refresh tokens, DPoP, a headless login whose answer
 * goes straight to `setTokens`, client credentials clients and knobs for revocation, outages
 * and latency. No other entry point loads this one or oidc-provider.
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 * import { startTestIdentityProvider } from "connect-oidc/testing";
 *
 * const idp = await startTestIdentityProvider({ accessTokenTtl: 5 });
 * const tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
 * await tokens.setTokens(await idp.login());
 * // … calls through createAuthInterceptor(tokens); then:
 * tokens.close();
 * await idp.close();
 * ```
 *
 * @module connect-oidc/testing
 */
export { startTestIdentityProvider } from "./testing/identity-provider.js";
export type {
  TestIdentityProvider,
  TestIdentityProviderOptions,
  TestIdentityProviderStats,
  TestLatencyOptions,
  TestLoginOptions,
  TestLoginResponse,
  TestOutageAnswer,
  TestTokenOutage,
  TestTransportFault,
} from "./testing/identity-provider-types.js";
export { startTestServer, type TestServer, type TestServerOptions } from "./testing/connect-server.js";

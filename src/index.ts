/**
 * Keep a ConnectRPC client authenticated with OIDC: the auth interceptor, the token
 * manager, the memory store, the device code login, types and errors. Runs wherever
 * `fetch` and WebCrypto do (Node, browsers, Deno, Bun).
 *
 * @example
 * ```ts
 * import { createClient } from "@connectrpc/connect";
 * import { createConnectTransport } from "@connectrpc/connect-web";
 * import { createAuthInterceptor, createTokenManager } from "connect-oidc";
 *
 * const tokens = createTokenManager({ issuer: "https://login.example.com", clientId: "my-app" });
 * const transport = createConnectTransport({
 *   baseUrl: "https://api.example.com",
 *   interceptors: [createAuthInterceptor(tokens)],
 * });
 * const client = createClient(MyService, transport);
 * ```
 *
 * @module connect-oidc
 */
export { type AuthInterceptorEvent, type AuthInterceptorOptions, createAuthInterceptor } from "./interceptor.js";
export {
  createTokenManager,
  type ResourceTokenProvider,
  type SignOutOptions,
  type SignOutResult,
  type TokenManager,
  type TokenManagerOptions,
} from "./token/manager.js";
export type { TokenFailure, TokenState, TokenStatus } from "./token/status.js";
export { memoryStore, type MemoryStoreOptions } from "./memory-store.js";
export { createTokenExchange, type ExchangeSource, type TokenExchange, type TokenExchangeOptions } from "./exchanged-tokens.js";
export type { ClientAssertion, ClientAuthentication, ClientPrivateKey } from "./client-auth.js";
export type { DPoPAlgorithm, DPoPKey, DPoPOption, StoredDPoPKey } from "./dpop-key.js";
export { loginWithDeviceCode, type DeviceCodeInfo, type DeviceCodeLoginOptions } from "./login-device.js";
export {
  ClientAssertionError,
  type ClientAssertionErrorReason,
  ConfigurationError,
  type ConfigurationErrorCode,
  ConnectOidcError,
  type ConnectOidcErrorCode,
  DPoPKeyError,
  type DPoPKeyErrorReason,
  InsufficientScopeError,
  LoginError,
  ProviderConfigurationError,
  type ProviderConfigurationErrorReason,
  ReauthRequiredError,
  RevocationError,
  StepUpRequiredError,
  TokenManagerClosedError,
  TokenRefreshError,
  TokenStoreError,
  type TokenStoreErrorReason,
} from "./errors.js";
export type {
  Clock,
  CustomFetch,
  DPoPProver,
  LockHold,
  RefreshAttempt,
  LoginIdentity,
  RefreshReason,
  ResourceTokens,
  StoredTokens,
  TokenEndpointResponse,
  TokenEvent,
  TokenProvider,
  TokenStore,
} from "./types.js";

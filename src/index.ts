export { createAuthInterceptor, type AuthInterceptorOptions } from "./interceptor.js";
export { createTokenManager, type TokenManager, type TokenManagerOptions } from "./token-manager.js";
export { memoryStore } from "./memory-store.js";
export type { ClientAuthentication, ClientPrivateKey } from "./client-auth.js";
export { loginWithDeviceCode, type DeviceCodeInfo, type DeviceCodeLoginOptions } from "./login-device.js";
export {
  ConfigurationError,
  ConnectOidcError,
  type ConnectOidcErrorCode,
  LoginError,
  ReauthRequiredError,
  TokenManagerClosedError,
  TokenRefreshError,
  TokenStoreError,
  type TokenStoreErrorReason,
} from "./errors.js";
export type {
  Clock,
  RefreshReason,
  StoredTokens,
  TokenEndpointResponse,
  TokenEvent,
  TokenProvider,
  TokenStore,
} from "./types.js";

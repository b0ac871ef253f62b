/**
 * Metrics and traces of the token layer through OpenTelemetry: token refreshes by grant,
 * reason and outcome, their duration, the access token's time to expiry, the login's state,
 * calls re-sent after a refusal, and a span per refresh. Needs `@opentelemetry/api` (an
 * optional peer dependency: install it to use this entry point); no other entry point loads
 * this one or `@opentelemetry/api`. Never a token, a code or a secret in an attribute.
 *
 * @example
 * ```ts
 * import { createAuthInterceptor, createTokenManager } from "connect-oidc";
 * import { createTokenTelemetry } from "connect-oidc/otel";
 *
 * const telemetry = createTokenTelemetry(); // reports through the global providers of @opentelemetry/api
 * const tokens = createTokenManager({ issuer: "https://login.example.com", clientId: "my-cli", onEvent: telemetry.onEvent });
 * const interceptor = createAuthInterceptor(tokens, { onEvent: telemetry.onEvent });
 * ```
 *
 * @module connect-oidc/otel
 */
export { createTokenTelemetry, type TokenTelemetry, type TokenTelemetryOptions } from "./otel/telemetry.js";

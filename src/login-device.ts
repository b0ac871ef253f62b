/**
 * The first token on a machine without a browser: the OAuth 2.0 Device Authorization
 * Grant (RFC 8628) through openid-client.
 */
import type * as oidc from "openid-client";
import { clampDelay } from "./clock.js";
import { ConfigurationError, LoginError } from "./errors.js";
import { describeFailure } from "./failure.js";
import {
  checkLoginOptions,
  DEFAULT_LOGIN_SCOPE,
  discoverForLogin,
  type LoginDPoP,
  type LoginOptions,
  loginDPoP,
  loginFailure,
  loginRequestFailure,
  loginResult,
  step,
} from "./login-shared.js";
import { loadOpenidClient } from "./oidc.js";
import type { TokenEndpointResponse } from "./types.js";

/**
 * What the user needs to approve a device login, handed to `onUserCode`.
 *
 * @example
 * ```ts
 * import type { DeviceCodeInfo } from "connect-oidc";
 *
 * function showCode({ userCode, verificationUri, verificationUriComplete, expiresIn }: DeviceCodeInfo): void {
 *   console.error(`Open ${verificationUriComplete ?? verificationUri} and enter ${userCode} within ${Math.round(expiresIn / 60)} min`);
 * }
 * ```
 */
export interface DeviceCodeInfo {
  /** The code the user types at `verificationUri`. */
  readonly userCode: string;
  /** Where the user goes to enter the code. */
  readonly verificationUri: string;
  /** The same page with the code filled in (for a link or a QR code), when the IdP sends one. */
  readonly verificationUriComplete?: string;
  /** Seconds until the code expires (600 when the IdP sends no usable `expires_in`). */
  readonly expiresIn: number;
}

/**
 * Options of {@link loginWithDeviceCode}: the issuer and client, what to ask for, and
 * `onUserCode` to show the user where to go.
 *
 * @example
 * ```ts
 * import { loginWithDeviceCode, type DeviceCodeLoginOptions } from "connect-oidc";
 *
 * const options: DeviceCodeLoginOptions = {
 *   issuer: "https://login.example.com",
 *   clientId: "my-cli",
 *   scope: "openid offline_access api",
 *   onUserCode: ({ userCode, verificationUri }) => console.error(`Open ${verificationUri} and enter ${userCode}`),
 * };
 * const login = await loginWithDeviceCode(options);
 * ```
 */
export interface DeviceCodeLoginOptions extends LoginOptions {
  /**
   * Show the user where to go and what to type. Called once, before polling starts.
   * The library prints nothing itself.
   */
  readonly onUserCode: (info: DeviceCodeInfo) => void;
}

/**
 * Log in with the OAuth 2.0 Device Authorization Grant (RFC 8628): for machines
 * without a browser, or where the user approves on another device.
 *
 * Asks the identity provider for a user code, hands it to `onUserCode`, then polls
 * the token endpoint (at the interval the IdP asks for) until the user approves,
 * denies, or the code expires. The result is plain data: pass it to
 * `TokenManager.setTokens`.
 *
 * Failures:
 * - denied by the user, expired code, or any other IdP / network failure: `LoginError`
 *   (`code` `ERR_LOGIN`; its `cause` is a token-free summary of the failure: HTTP status,
 *   OAuth error code, openid-client's error code. No token in any message or cause);
 * - invalid options: `ConfigurationError`;
 * - `signal` aborted: rejects at once with `signal.reason`, and polling stops.
 *
 * @example
 * ```ts
 * import { createTokenManager, loginWithDeviceCode } from "connect-oidc";
 *
 * const issuer = "https://id.example.com";
 * const clientId = "my-cli";
 * const tokens = createTokenManager({ issuer, clientId });
 * await tokens.setTokens(
 *   await loginWithDeviceCode({
 *     issuer,
 *     clientId,
 *     signal: AbortSignal.timeout(10 * 60_000),
 *     onUserCode: ({ userCode, verificationUri, verificationUriComplete }) => {
 *       console.error(`Open ${verificationUriComplete ?? verificationUri} and enter ${userCode}`);
 *     },
 *   }),
 * );
 * ```
 */
export async function loginWithDeviceCode(options: DeviceCodeLoginOptions): Promise<TokenEndpointResponse> {
  const name = "loginWithDeviceCode";
  checkLoginOptions(name, options);
  if (typeof options.onUserCode !== "function") throw new ConfigurationError(`${name}: \`onUserCode\` is required`);
  const { signal } = options;
  signal?.throwIfAborted();

  const config = await discoverForLogin(name, options);
  const oidc = await loadOpenidClient(); // loaded by the discovery
  readMissingLifetimeAsDefault(oidc, config);
  const dpop = await loginDPoP(name, options, config);
  const resource: Record<string, string> = options.resource !== undefined ? { resource: options.resource } : {};
  const authorization = await step(
    oidc.initiateDeviceAuthorization(config, { scope: options.scope ?? DEFAULT_LOGIN_SCOPE, ...resource }),
    signal,
    (error) => loginRequestFailure(name, "device_code", options, `Device login could not start: ${describeFailure(error)}`, error),
  );

  const lifetimeS = usableLifetimeS(authorization.expires_in) ?? DEFAULT_DEVICE_CODE_LIFETIME_S;
  showUserCode(name, options, authorization, lifetimeS);
  const response = await pollUntilApproved({ name, options, oidc, config, authorization, resource, lifetimeS, dpop });
  return loginResult(name, response, dpop);
}

/** Hands the user code to the caller; a callback that throws ends the login. */
function showUserCode(
  name: string,
  options: DeviceCodeLoginOptions,
  authorization: oidc.DeviceAuthorizationResponse,
  lifetimeS: number,
): void {
  try {
    options.onUserCode({
      userCode: authorization.user_code,
      verificationUri: authorization.verification_uri,
      ...(authorization.verification_uri_complete !== undefined
        ? { verificationUriComplete: authorization.verification_uri_complete }
        : {}),
      expiresIn: lifetimeS,
    });
  } catch (cause) {
    throw new LoginError(`${name}: the onUserCode callback failed`, { cause });
  }
}

/** What the poll of a device login works with. */
interface DeviceLogin {
  readonly name: string;
  readonly options: DeviceCodeLoginOptions;
  readonly oidc: typeof import("openid-client");
  readonly config: oidc.Configuration;
  readonly authorization: oidc.DeviceAuthorizationResponse;
  readonly resource: Record<string, string>;
  readonly lifetimeS: number;
  readonly dpop: LoginDPoP | undefined;
}

/** Polls the token endpoint until the user approves, denies, or the code expires. */
async function pollUntilApproved(login: DeviceLogin): Promise<oidc.TokenEndpointResponse> {
  const { name, options, oidc, lifetimeS } = login;
  const { signal } = options;
  // openid-client polls until its signal aborts. A caller's signal replaces its own
  // expiry timer, so combine both: polling ends at the caller's abort or at expires_in
  // (clamped: a lifetime over about 24.8 days would overflow setTimeout and fire at once).
  const polling = new AbortController();
  let expired = false;
  const expiry = setTimeout(
    () => {
      expired = true;
      polling.abort();
    },
    clampDelay(lifetimeS * 1000),
  );
  const onAbort = () => polling.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await step(
      oidc.pollDeviceAuthorizationGrant(login.config, login.authorization, login.resource, {
        signal: polling.signal,
        ...(login.dpop !== undefined ? { DPoP: login.dpop.handle } : {}),
      }),
      signal,
      (error) => {
        const code = (error as { error?: unknown }).error;
        if (expired || code === "expired_token") {
          return loginFailure(
            `The device code expired before the login was approved (it was valid for ${lifetimeS} s): start the login again`,
            error,
          );
        }
        if (code === "access_denied") {
          return loginFailure("The device login was denied at the identity provider", error);
        }
        return loginRequestFailure(name, "device_code", options, `Device login failed: ${describeFailure(error)}`, error);
      },
    );
  } finally {
    clearTimeout(expiry);
    signal?.removeEventListener("abort", onAbort);
    // Stops a poll still waiting (after an abort) at its next step.
    if (!polling.signal.aborted) polling.abort();
  }
}

/**
 * What we take for a device code's lifetime when the IdP sends none we can use (missing,
 * zero, negative, not a number; RFC 8628 requires it): 10 minutes, the usual lifetime.
 * Ending the login at once, or refusing it, would punish the user for the IdP's slip; a
 * code that really expires sooner ends the login with `expired_token` from the IdP.
 */
const DEFAULT_DEVICE_CODE_LIFETIME_S = 600;

/** A lifetime in seconds, if `expiresIn` is one (openid-client reads "600" as 600 too). */
function usableLifetimeS(expiresIn: unknown): number | undefined {
  const seconds = typeof expiresIn === "string" ? Number.parseFloat(expiresIn) : expiresIn;
  return typeof seconds === "number" && Number.isFinite(seconds) && seconds > 0 ? seconds : undefined;
}

/**
 * openid-client refuses a device authorization answer without a usable `expires_in`
 * (and takes 0 as "expired"): give it the default lifetime instead, before openid-client
 * reads the answer. Only that endpoint's 200 JSON answers are touched.
 */
function readMissingLifetimeAsDefault(oidc: typeof import("openid-client"), config: oidc.Configuration): void {
  const endpoint = config.serverMetadata().device_authorization_endpoint;
  if (endpoint === undefined) return;
  const next: oidc.CustomFetch = config[oidc.customFetch] ?? ((url, options) => fetch(url, options as RequestInit));
  config[oidc.customFetch] = async (url, options) => {
    const response = await next(url, options);
    if (response.status !== 200 || new URL(url).href !== new URL(endpoint).href) return response;
    let body: unknown;
    try {
      body = await response.clone().json();
    } catch {
      return response; // not JSON: openid-client says so
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) return response;
    if (usableLifetimeS((body as { expires_in?: unknown }).expires_in) !== undefined) return response;
    const headers = new Headers(response.headers);
    headers.delete("content-length");
    headers.delete("content-encoding");
    return new Response(JSON.stringify({ ...body, expires_in: DEFAULT_DEVICE_CODE_LIFETIME_S }), {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  };
}

/**
 * Interactive login for the example clients, through connect-oidc's login flows.
 * Prompts go to stderr; the result goes straight to `setTokens`, never to a screen.
 */
import { type DPoPOption, loginWithDeviceCode, type TokenEndpointResponse } from "connect-oidc";
import { loginWithBrowser } from "connect-oidc/node";

export type LoginMethod = "device" | "browser";

export interface LoginBase {
  readonly issuer: string;
  readonly clientId: string;
  readonly scope?: string;
  readonly resource?: string;
  readonly allowInsecureRequests?: boolean;
  readonly signal?: AbortSignal;
  /** Bind the login to a new DPoP key (RFC 9449); the response carries it as `dpopKey`. */
  readonly dpop?: DPoPOption;
}

const stderr = (line: string) => process.stderr.write(`${line}\n`);

/** A browser where there is a desktop, else the device flow (SSH sessions, containers). */
export function defaultLoginMethod(): LoginMethod {
  if (process.platform === "darwin" || process.platform === "win32") return "browser";
  return process.env.DISPLAY || process.env.WAYLAND_DISPLAY ? "browser" : "device";
}

export function login(method: LoginMethod, options: LoginBase): Promise<TokenEndpointResponse> {
  if (method === "device") {
    return loginWithDeviceCode({
      ...options,
      onUserCode(info) {
        const minutes = Math.max(1, Math.round(info.expiresIn / 60));
        if (info.verificationUriComplete)
          stderr(`To sign in, open ${info.verificationUriComplete} (code ${info.userCode}, valid ${minutes} min)`);
        else stderr(`To sign in, open ${info.verificationUri} and enter the code ${info.userCode} (valid ${minutes} min)`);
      },
    });
  }
  stderr("Opening your browser to sign in…");
  return loginWithBrowser(options);
}

/** http:// issuers are accepted for loopback addresses only (development and the demo). */
export function isLoopback(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  return protocol === "http:" && (hostname === "127.0.0.1" || hostname === "localhost" || hostname === "[::1]");
}

/**
 * Interactive login for the example clients, through connect-oidc's own login flows.
 * They are looked up at run time so the examples work with builds that do not have them
 * yet; where one is missing the error says so.
 */
import * as core from "../../src/index.js";
import * as nodeEntry from "../../src/node.js";
import type { TokenEndpointResponse } from "../../src/index.js";

export type LoginMethod = "device" | "browser";

interface LoginBase {
  readonly issuer: string;
  readonly clientId: string;
  readonly scope?: string;
  readonly resource?: string;
  readonly allowInsecureRequests?: boolean;
  readonly signal?: AbortSignal;
}

type DeviceLogin = (
  options: LoginBase & {
    onUserCode(info: { userCode: string; verificationUri: string; verificationUriComplete?: string; expiresIn: number }): void;
  },
) => Promise<TokenEndpointResponse>;
type BrowserLogin = (options: LoginBase) => Promise<TokenEndpointResponse>;

const exported = <T>(module: object, name: string): T | undefined => {
  const value = (module as Record<string, unknown>)[name];
  return typeof value === "function" ? (value as T) : undefined;
};

export function availableLoginMethods(): LoginMethod[] {
  const methods: LoginMethod[] = [];
  if (exported(core, "loginWithDeviceCode")) methods.push("device");
  if (exported(nodeEntry, "loginWithBrowser")) methods.push("browser");
  return methods;
}

/** Logs in with the given method; prompts go to stderr. */
export async function login(method: LoginMethod, options: LoginBase): Promise<TokenEndpointResponse> {
  if (method === "device") {
    const loginWithDeviceCode = exported<DeviceLogin>(core, "loginWithDeviceCode");
    if (!loginWithDeviceCode) throw new Error("This build of connect-oidc has no loginWithDeviceCode yet; try --login browser");
    return loginWithDeviceCode({
      ...options,
      onUserCode(info) {
        const url = info.verificationUriComplete ?? info.verificationUri;
        process.stderr.write(`To sign in, open ${url} and enter the code ${info.userCode} (valid ${Math.round(info.expiresIn / 60)} min)\n`);
      },
    });
  }
  const loginWithBrowser = exported<BrowserLogin>(nodeEntry, "loginWithBrowser");
  if (!loginWithBrowser) throw new Error("This build of connect-oidc has no loginWithBrowser yet; try --login device");
  return loginWithBrowser(options);
}

/** http:// issuers are accepted for loopback addresses only (development and the demo). */
export function isLoopback(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  return protocol === "http:" && (hostname === "127.0.0.1" || hostname === "localhost" || hostname === "[::1]");
}

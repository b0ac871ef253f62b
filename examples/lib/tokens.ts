/**
 * The token manager of an example client: the login comes from the store when a usable
 * one is there (another process may have made it), else from an interactive login whose
 * result is saved to the store for every later process.
 */
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createAuthInterceptor, createTokenManager, ReauthRequiredError, type TokenEvent, type TokenManager } from "connect-oidc";
import { defaultLoginMethod, isLoopback, login, type LoginMethod } from "./login.js";
import { storeFromFlag } from "./store.js";
import { printTokenEvents } from "./token-events.js";

export interface LoggedInOptions {
  readonly issuer: string;
  readonly clientId: string;
  /** `--store` flag value; default keyring. */
  readonly store?: string;
  /** Default: the browser on a desktop, else the device flow; "none": fail instead. */
  readonly login?: LoginMethod | "none";
  /** Default: print every event to stderr. */
  readonly onEvent?: (event: TokenEvent) => void;
}

const stderr = (line: string) => process.stderr.write(`${line}\n`);

export async function loggedInTokenManager(options: LoggedInOptions): Promise<TokenManager> {
  // http:// only for loopback issuers (development); anything else must be https.
  const allowInsecureRequests = isLoopback(options.issuer);
  const onEvent = options.onEvent ?? printTokenEvents();
  // Before the first login "re-login required" is the expected answer, not news.
  let checking = true;
  const tokens = createTokenManager({
    issuer: options.issuer,
    clientId: options.clientId,
    store: storeFromFlag(options.store, options),
    allowInsecureRequests,
    onEvent: (event) => {
      if (!(checking && event.type === "reauth-required")) onEvent(event);
    },
  });
  try {
    await tokens.getAccessToken();
    return tokens;
  } catch (error) {
    if (!(error instanceof ReauthRequiredError)) {
      tokens.close();
      throw error;
    }
  } finally {
    checking = false;
  }
  const method = options.login ?? defaultLoginMethod();
  if (method === "none") {
    tokens.close();
    throw new Error("No usable login stored; run once without --login none to log in");
  }
  stderr(`No usable login stored for ${options.clientId} at ${options.issuer}: logging in (${method})`);
  try {
    await tokens.setTokens(await login(method, { issuer: options.issuer, clientId: options.clientId, allowInsecureRequests }));
  } catch (error) {
    tokens.close();
    throw error;
  }
  stderr("✓ Logged in");
  return tokens;
}

export interface ClientFlags {
  readonly issuer: string;
  readonly "client-id": string;
  readonly server: string;
  readonly store?: string | undefined;
  readonly login?: string | undefined;
  readonly http2?: boolean | undefined;
}

/** The example clients' common start: a logged-in token manager behind an authenticating transport. */
export async function withLoggedInTransport<T>(flags: ClientFlags, run: (transport: Transport) => Promise<T>): Promise<T> {
  const tokens = await loggedInTokenManager({
    issuer: flags.issuer,
    clientId: flags["client-id"],
    ...(flags.store !== undefined ? { store: flags.store } : {}),
    ...(flags.login !== undefined ? { login: flags.login as LoginMethod | "none" } : {}),
  });
  try {
    return await run(
      createConnectTransport({
        baseUrl: flags.server,
        httpVersion: flags.http2 ? "2" : "1.1",
        interceptors: [createAuthInterceptor(tokens)],
      }),
    );
  } finally {
    tokens.close();
  }
}

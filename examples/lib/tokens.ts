/**
 * The token manager of an example client: the login comes from the store when a usable
 * one is there (another process may have made it), else from an interactive login whose
 * result is saved to the store for every later process.
 */
import { createTokenManager, ReauthRequiredError, type TokenEvent, type TokenManager } from "connect-oidc";
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

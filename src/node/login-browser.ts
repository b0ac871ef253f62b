/**
 * The first token on a machine with a browser: authorization code + PKCE (S256)
 * through openid-client, with a loopback redirect (RFC 8252 §7.3) on 127.0.0.1 and a
 * port the OS picks (or a fixed one, for providers that match redirect URIs exactly).
 * The listener lives only as long as the login.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type * as oidc from "openid-client";
import { clampDelay } from "../clock.js";
import { ConfigurationError, LoginError } from "../errors.js";
import { describeFailure, libraryCode, oauthErrorCode, summarizeFailure } from "../failure.js";
import { checkDuration, checkFunction, checkString } from "../options.js";
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
} from "../login-shared.js";
import { loadOpenidClient } from "../oidc.js";
import type { TokenEndpointResponse } from "../types.js";

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const DEFAULT_REDIRECT_PATH = "/callback";
/** An error code fit to repeat in a message: letters, digits, `_`, `.`, `-`. */
const PLAIN_ERROR_CODE = /^[\w.-]+$/;

/**
 * Options of {@link loginWithBrowser}: the issuer and client, what to ask for, how to show
 * the URL, and (for providers that match redirect URIs exactly) the loopback port and path.
 *
 * @example
 * ```ts
 * import { loginWithBrowser, type BrowserLoginOptions } from "connect-oidc/node";
 *
 * const options: BrowserLoginOptions = {
 *   issuer: "https://login.example.com",
 *   clientId: "my-cli",
 *   redirectPort: 8765, // registered as http://127.0.0.1:8765/callback
 *   timeoutMs: 2 * 60_000,
 * };
 * const login = await loginWithBrowser(options);
 * ```
 */
export interface BrowserLoginOptions extends LoginOptions {
  /**
   * How long the whole login may take once the browser is asked to open (the user
   * signing in and the code exchange). Default 5 minutes. Then: `LoginError`. More than
   * about 24.8 days (setTimeout's limit) counts as that long.
   */
  readonly timeoutMs?: number;
  /**
   * Show the authorization URL to the user. Default: open the system browser
   * (`open` on macOS, `rundll32 url.dll` on Windows, `xdg-open` elsewhere), and
   * print nothing — the library never writes to stdout or stderr. When that browser
   * cannot be started the login fails at once with a `LoginError` that says so.
   * To print the URL instead (or as well), pass your own, e.g.
   * `openBrowser: (url) => console.error(\`Open ${url} to log in\`)`.
   * A callback that throws or rejects ends the login with a `LoginError`.
   * The URL holds no secret (only `state`, `nonce` and the PKCE challenge).
   */
  readonly openBrowser?: (url: URL) => void | Promise<void>;
  /**
   * The loopback redirect's port: an integer 0–65535. Default 0: any free port (RFC 8252
   * §7.3 lets the provider accept any port for a loopback redirect). Set it for providers
   * that match redirect URIs exactly, to the port registered there. A port in use ends
   * the login with a `LoginError` that says so, before the browser is opened.
   */
  readonly redirectPort?: number;
  /**
   * The loopback redirect's path. Default `"/callback"`. A plain absolute path as it
   * appears in a URL: starts with `/`, no `?` or `#`, no `.`/`..` segments, nothing that
   * needs escaping. The redirect URI is `http://127.0.0.1:<port><redirectPath>`.
   */
  readonly redirectPath?: string;
  /**
   * Ask for a stronger login (RFC 9470 step-up): the `acr_values` authorization parameter,
   * space-separated authentication context classes in order of preference — what a server's
   * `StepUpRequiredError` names in its `acrValues`. The provider says which it met in the ID
   * token's `acr`, kept in the login's `identity` (and `tokens.status()`).
   */
  readonly acrValues?: string;
  /**
   * The `max_age` authorization parameter (OIDC Core §3.1.2.1), whole seconds ≥ 0: the user
   * must have authenticated at most this long ago, else the provider asks again (0: always).
   * A `StepUpRequiredError`'s `maxAge`. The ID token's `auth_time` is kept in `identity.authTime`.
   */
  readonly maxAge?: number;
}

/**
 * Log in with the authorization code flow and PKCE (S256) in the user's browser.
 *
 * Listens on `http://127.0.0.1:<random port>/callback` (or `redirectPort` and
 * `redirectPath`), opens the authorization URL, waits for the identity provider to
 * redirect back, exchanges the code through openid-client (which checks `state`, `iss`,
 * PKCE and, with the `openid` scope, the ID token's `nonce`), and shows the browser a
 * small page saying whether it worked. The listener is closed whatever the outcome. The
 * result is plain data: pass it to `TokenManager.setTokens`.
 *
 * - Any other request to the listener (another path or method, a missing or wrong
 *   `state`, a parameter twice, neither or both of `code` and `error`: another tab, a
 *   stale reload, a forged request) gets a 4xx page and is otherwise ignored: the login
 *   keeps waiting for the real redirect, so nobody can end it from outside.
 * - An error redirect (e.g. `error=access_denied`) with the right `state`: `LoginError`,
 *   naming the error code when it is a plain OAuth code (never `error_description`).
 * - `timeoutMs` elapsed: `LoginError`. `signal` aborted: rejects at once with
 *   `signal.reason`. Invalid options: `ConfigurationError`.
 * - `prompt=consent` is sent when `offline_access` is requested: some providers
 *   (oidc-provider among them) issue no refresh token without it.
 * - A random `nonce` is sent whenever the scope includes `openid` (some providers require
 *   one even in the code flow); an ID token without it, or with another, is refused
 *   with a `LoginError`.
 *
 * No message contains token material, and no `cause` either: a failed exchange is kept
 * as a token-free summary (HTTP status, OAuth error code, openid-client's error code).
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 * import { keyringStore, loginWithBrowser } from "connect-oidc/node";
 *
 * const issuer = "https://id.example.com";
 * const clientId = "my-cli"; // a public "native" client allowing http://127.0.0.1/callback
 * const tokens = createTokenManager({
 *   issuer,
 *   clientId,
 *   store: keyringStore({ service: "my-cli", account: "default" }),
 * });
 * await tokens.setTokens(
 *   await loginWithBrowser({
 *     issuer,
 *     clientId,
 *     // Default: the system browser. This prints the URL instead:
 *     openBrowser: (url) => console.error(`Open ${url} to log in`),
 *   }),
 * );
 * ```
 */
export async function loginWithBrowser(options: BrowserLoginOptions): Promise<TokenEndpointResponse> {
  const name = "loginWithBrowser";
  const settings = browserLoginSettings(name, options);
  const { signal } = options;
  signal?.throwIfAborted();

  const config = await discoverForLogin(name, options);
  const oidc = await loadOpenidClient(); // loaded by the discovery
  const scope = options.scope ?? DEFAULT_LOGIN_SCOPE;
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  // The ID token must name this login: some providers refuse `openid` without a nonce.
  const nonce = scope.split(" ").includes("openid") ? oidc.randomNonce() : undefined;
  // DPoP: the code is bound to the key (dpop_jkt, RFC 9449 §10), the exchange carries a proof.
  const dpop = await loginDPoP(name, options, config);
  const login: BrowserLogin = { name, options, oidc, config, scope, codeVerifier, state, nonce, dpop };

  const listener = await listen(name, state, settings);
  let interruption: Interruption | undefined;
  try {
    signal?.throwIfAborted();
    const authorizationUrl = await buildAuthorizationUrl(login, listener.redirectUri);
    interruption = interruptions(login, settings, authorizationUrl);
    const callback = await Promise.race([listener.callback, interruption.interrupted]);
    const response = await Promise.race([exchangeCode(login, callback.url), interruption.interrupted]);
    const result = loginResult(name, response, dpop);
    await listener.finish(true);
    return result;
  } finally {
    interruption?.stop();
    await listener.close();
  }
}

/** The options of the browser login only, checked, with their defaults. */
interface BrowserSettings {
  readonly redirectPort: number;
  readonly redirectPath: string;
  readonly timeoutMs: number;
  readonly openBrowser: (url: URL) => void | Promise<void>;
}

function browserLoginSettings(name: string, options: BrowserLoginOptions): BrowserSettings {
  checkLoginOptions(name, options);
  checkDuration(name, "timeoutMs", options.timeoutMs, 1);
  checkFunction(name, "openBrowser", options.openBrowser);
  checkPort(name, "redirectPort", options.redirectPort);
  checkUrlPath(name, "redirectPath", options.redirectPath);
  checkString(name, "acrValues", options.acrValues, false);
  if (options.maxAge !== undefined && !(Number.isSafeInteger(options.maxAge) && options.maxAge >= 0)) {
    throw new ConfigurationError(`${name}: \`maxAge\` must be a whole number of seconds ≥ 0`);
  }
  return {
    redirectPort: options.redirectPort ?? 0,
    redirectPath: options.redirectPath ?? DEFAULT_REDIRECT_PATH,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    openBrowser: options.openBrowser ?? openSystemBrowser,
  };
}

/** One browser login: what its steps share once the provider is discovered. */
interface BrowserLogin {
  readonly name: string;
  readonly options: BrowserLoginOptions;
  readonly oidc: typeof import("openid-client");
  readonly config: oidc.Configuration;
  readonly scope: string;
  readonly codeVerifier: string;
  readonly state: string;
  readonly nonce: string | undefined;
  readonly dpop: LoginDPoP | undefined;
}

async function listen(name: string, state: string, settings: BrowserSettings): Promise<Listener> {
  try {
    return await startListener(state, settings.redirectPort, settings.redirectPath);
  } catch (cause) {
    throw listenFailure(name, settings.redirectPort, cause);
  }
}

async function buildAuthorizationUrl(login: BrowserLogin, redirectUri: string): Promise<URL> {
  const { oidc, options, scope } = login;
  const parameters: Record<string, string> = {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await oidc.calculatePKCECodeChallenge(login.codeVerifier),
    code_challenge_method: "S256",
    state: login.state,
  };
  if (scope.split(" ").includes("offline_access")) parameters.prompt = "consent";
  if (options.resource !== undefined) parameters.resource = options.resource;
  if (login.nonce !== undefined) parameters.nonce = login.nonce;
  if (options.acrValues !== undefined) parameters.acr_values = options.acrValues;
  if (options.maxAge !== undefined) parameters.max_age = String(options.maxAge);
  if (login.dpop !== undefined) parameters.dpop_jkt = await login.dpop.handle.calculateThumbprint();
  try {
    return oidc.buildAuthorizationUrl(login.config, parameters);
  } catch (cause) {
    // E.g. a provider whose metadata has no authorization_endpoint.
    throw new LoginError(`${login.name}: cannot build the authorization URL: ${describeFailure(cause)}`, {
      cause: summarizeFailure(cause),
    });
  }
}

/** Everything that can end the wait other than the redirect itself, and its cleanup. */
interface Interruption {
  readonly interrupted: Promise<never>;
  stop(): void;
}

/** Opens the browser and starts the login's timeout; rejects on either, or on an abort. */
function interruptions(login: BrowserLogin, settings: BrowserSettings, authorizationUrl: URL): Interruption {
  const { name, options } = login;
  const { signal } = options;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const interrupted = new Promise<never>((_resolve, reject) => {
    // Clamped: a timeout over about 24.8 days would overflow setTimeout and fire at once.
    timer = setTimeout(
      () =>
        reject(
          new LoginError(
            // The provider shows a wrong client id or redirect URI in the browser, never to this listener.
            `The browser login timed out after ${formatDuration(settings.timeoutMs)}: if the browser showed an error from the identity provider, check \`clientId\` and the redirect URI registered for it (\`redirectPort\`, \`redirectPath\`)`,
          ),
        ),
      clampDelay(settings.timeoutMs),
    );
    if (signal !== undefined) {
      onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
    }
    Promise.resolve()
      .then(() => settings.openBrowser(new URL(authorizationUrl)))
      .catch((cause: unknown) =>
        reject(
          options.openBrowser === undefined
            ? new LoginError(
                `Could not open a browser for the login (${cause instanceof Error ? cause.message : String(cause)}): ` +
                  "pass `openBrowser` to show the URL yourself, or use loginWithDeviceCode on a machine without a browser",
                { cause },
              )
            : new LoginError(`${name}: the openBrowser callback failed`, { cause }),
        ),
      );
  });
  interrupted.catch(() => {}); // settled later than the login, or never awaited
  return {
    interrupted,
    stop() {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
    },
  };
}

/** The code exchange (openid-client checks `state`, `iss`, PKCE and the nonce), its failures in words. */
function exchangeCode(login: BrowserLogin, callbackUrl: URL): Promise<oidc.TokenEndpointResponse> {
  const { name, options, oidc, nonce, dpop } = login;
  return step(
    oidc.authorizationCodeGrant(
      login.config,
      callbackUrl,
      {
        pkceCodeVerifier: login.codeVerifier,
        expectedState: login.state,
        ...(nonce !== undefined ? { expectedNonce: nonce } : {}),
        // openid-client then checks the ID token's auth_time against it.
        ...(options.maxAge !== undefined ? { maxAge: options.maxAge } : {}),
      },
      options.resource !== undefined ? { resource: options.resource } : undefined,
      dpop !== undefined ? { DPoP: dpop.handle } : undefined,
    ),
    options.signal,
    (error) => {
      if (error instanceof oidc.AuthorizationResponseError) {
        // The redirect's `error` is whatever reached the listener: name it only when it is
        // an RFC 6749 error code, and never repeat error_description or other parameters.
        // RFC 6749 allows markup characters ("<script>" passes); real codes are snake_case.
        const rfcCode = oauthErrorCode(error.error);
        const code = rfcCode !== undefined && PLAIN_ERROR_CODE.test(rfcCode) ? rfcCode : undefined;
        if (code === "access_denied") {
          return loginFailure("The browser login was denied at the identity provider (access_denied)", error);
        }
        if (code === undefined) return loginFailure("The identity provider returned an invalid error code", error);
        return loginRequestFailure(name, "authorization_code", options, `The identity provider refused the browser login (${code})`, {
          error: code,
        });
      }
      const nonceFailure = nonceFailureCode(error);
      if (nonceFailure !== undefined) {
        return loginFailure(`The browser login failed: the ID token does not carry this login's nonce (${nonceFailure})`, error);
      }
      return loginRequestFailure(name, "authorization_code", options, `The browser login failed: ${describeFailure(error)}`, error);
    },
  );
}

/** A port option: an integer 0–65535 (0 = any free port). */
function checkPort(name: string, option: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 65_535) {
    throw new ConfigurationError(`${name}: \`${option}\` must be an integer from 0 to 65535 (0: any free port)`);
  }
}

/**
 * A URL path option: absolute, and already what a URL's path would be (no query or
 * fragment, no dot segments, nothing escaped on the way): what is sent as the redirect
 * URI is then what the browser requests and what the listener compares.
 */
function checkUrlPath(name: string, option: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== "string" || !value.startsWith("/")) {
    throw new ConfigurationError(`${name}: \`${option}\` must be a path starting with "/"`);
  }
  if (value.includes("?") || value.includes("#")) {
    throw new ConfigurationError(`${name}: \`${option}\` must be a plain path, without "?" or "#"`);
  }
  if (new URL(value, "http://127.0.0.1").pathname !== value) {
    throw new ConfigurationError(
      `${name}: \`${option}\` must be a plain absolute path: no "//" at the start, no "." or ".." segments, no characters a URL escapes`,
    );
  }
}

/** Why the loopback listener could not start, and what to do about it. */
function listenFailure(name: string, port: number, cause: unknown): LoginError {
  const code = (cause as NodeJS.ErrnoException | null)?.code;
  if (code === "EADDRINUSE" && port !== 0) {
    return new LoginError(
      `${name}: port ${port} on 127.0.0.1 is in use (EADDRINUSE), so the login redirect cannot be received: ` +
        "close the program using it, or set `redirectPort` to another port registered with the identity provider",
      { cause },
    );
  }
  const where = port === 0 ? "127.0.0.1" : `127.0.0.1:${port}`;
  return new LoginError(`${name}: could not listen for the login redirect on ${where}${code ? ` (${code})` : ""}`, { cause });
}

/**
 * openid-client's error code when it refused the ID token over its `nonce` (missing, or
 * another login's); undefined for any other failure. Its cause says which claim failed.
 */
function nonceFailureCode(error: unknown): string | undefined {
  const code = libraryCode(error);
  if (code !== "OAUTH_JWT_CLAIM_COMPARISON_FAILED" && code !== "OAUTH_INVALID_RESPONSE") return undefined;
  const reason = (error as { cause?: unknown }).cause;
  return reason instanceof Error && /"nonce"/.test(reason.message) ? code : undefined;
}

function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}

interface Listener {
  readonly redirectUri: string;
  /** The first redirect that carries the expected `state`. */
  readonly callback: Promise<{ readonly url: URL }>;
  /** Answer that redirect's browser with the success or the failure page. */
  finish(ok: boolean): Promise<void>;
  /** Answer a pending browser with the failure page, then stop listening and drop every connection. */
  close(): Promise<void>;
}

async function startListener(state: string, port: number, callbackPath: string): Promise<Listener> {
  let accepted: http.ServerResponse | undefined;
  let resolveCallback!: (value: { url: URL }) => void;
  const callback = new Promise<{ url: URL }>((resolve) => {
    resolveCallback = resolve;
  });

  const server = http.createServer((req, res) => {
    try {
      answer(req, res);
    } catch {
      void page(res, 400, "Bad request", "This address only receives the login redirect.");
    }
  });
  /**
   * Anyone on this machine, and any web page, can send requests here: only the real
   * redirect ends the wait, anything else gets a 4xx and is otherwise ignored.
   */
  const answer = (req: http.IncomingMessage, res: http.ServerResponse) => {
    // The target as sent, not through the URL parser: "//host/…" would name another host,
    // and some targets ("//[") make it throw.
    const target = req.url ?? "";
    const queryStart = target.indexOf("?");
    const path = queryStart === -1 ? target : target.slice(0, queryStart);
    if (path !== callbackPath) {
      void page(res, 404, "Not found", "This address only receives the login redirect.");
      return;
    }
    if (req.method !== "GET") {
      void page(res, 405, "Method not allowed", "This address only receives the login redirect.", { allow: "GET" });
      return;
    }
    const query = new URLSearchParams(queryStart === -1 ? "" : target.slice(queryStart + 1));
    if (query.getAll("state").length !== 1 || query.get("state") !== state) {
      void page(res, 400, "Login not recognised", "This page does not belong to the login in progress. Go back to the application.");
      return;
    }
    // openid-client would refuse a response with a parameter twice, or with both or neither
    // of code and error, and end the login: whoever sent it must not be able to.
    const names = [...query.keys()];
    if (new Set(names).size !== names.length || query.has("code") === query.has("error")) {
      void page(res, 400, "Login response not understood", "This is not a login response. Go back to the application.");
      return;
    }
    if (accepted !== undefined) {
      void page(res, 400, "Login already handled", "This login has already been handled. You can close this window.");
      return;
    }
    accepted = res;
    const url = new URL(redirectUri);
    url.search = query.toString();
    resolveCallback({ url });
  };
  // The redirect is a plain GET: a WebSocket (or other) upgrade is refused, not passed on.
  server.on("upgrade", (_req, socket: Duplex) => {
    socket.on("error", () => {});
    socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  });
  // Node answers a request it cannot parse itself (400, or 431 for headers too large) and
  // destroys broken sockets: no clientError handler. CONNECT has no default answer.
  server.on("connect", (_req, socket: Duplex) => {
    socket.on("error", () => {});
    socket.end("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}${callbackPath}`;

  let finished: Promise<void> | undefined;
  const finish = (ok: boolean) =>
    (finished ??=
      accepted === undefined
        ? Promise.resolve()
        : ok
          ? page(accepted, 200, "Logged in", "You are logged in. You can close this window and go back to the application.")
          : page(accepted, 400, "Login failed", "The login did not complete. You can close this window and go back to the application."));

  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await finish(false);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    })());

  return { redirectUri, callback, finish, close };
}

/** A small self-contained page; resolves once it is handed to the OS. */
function page(
  res: http.ServerResponse,
  status: number,
  title: string,
  text: string,
  headers: http.OutgoingHttpHeaders = {},
): Promise<void> {
  if (res.headersSent || res.destroyed) return Promise.resolve();
  const body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body style="font-family:system-ui,sans-serif;margin:3em"><h1>${title}</h1><p>${text}</p></body></html>`;
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
    connection: "close",
    ...headers,
  });
  return new Promise((resolve) => {
    res.once("close", resolve);
    res.end(body, () => resolve());
  });
}

/**
 * Open `url` in the system browser. Rejects when the launcher cannot be started or
 * reports a failure (e.g. `xdg-open` on a machine without a desktop); never prints.
 * Launchers that stay running (some `xdg-open` fallbacks) never settle, and keep
 * neither the login nor the process waiting.
 */
async function openSystemBrowser(url: URL): Promise<void> {
  // Loaded here, not at import: a process that never logs in never loads child_process.
  const { spawn } = await import("node:child_process");
  const [command, args]: [string, string[]] =
    process.platform === "darwin"
      ? ["open", [url.href]]
      : process.platform === "win32"
        ? ["rundll32", ["url.dll,FileProtocolHandler", url.href]]
        : ["xdg-open", [url.href]];
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { detached: true, stdio: "ignore", windowsHide: true });
    child.once("error", reject);
    child.once("exit", (code, signalName) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} exited with ${code ?? signalName}`));
    });
    child.unref();
  });
}

/**
 * The first token on a machine with a browser: authorization code + PKCE (S256)
 * through openid-client, with a loopback redirect (RFC 8252 §7.3) on 127.0.0.1 and a
 * port the OS picks. The listener lives only as long as the login.
 */
import { spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import * as oidc from "openid-client";
import { LoginError } from "../errors.js";
import { describeFailure } from "../failure.js";
import { checkDuration, checkFunction } from "../options.js";
import {
  checkLoginOptions,
  DEFAULT_LOGIN_SCOPE,
  discoverForLogin,
  type LoginOptions,
  loginFailure,
  plainResponse,
  step,
} from "../login-shared.js";
import type { TokenEndpointResponse } from "../types.js";

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const CALLBACK_PATH = "/callback";

export interface BrowserLoginOptions extends LoginOptions {
  /**
   * How long the whole login may take once the browser is asked to open (the user
   * signing in and the code exchange). Default 5 minutes. Then: `LoginError`.
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
   * The URL holds no secret (only `state` and the PKCE challenge).
   */
  readonly openBrowser?: (url: URL) => void | Promise<void>;
}

/**
 * Log in with the authorization code flow and PKCE (S256) in the user's browser.
 *
 * Listens on `http://127.0.0.1:<random port>/callback`, opens the authorization URL,
 * waits for the identity provider to redirect back, exchanges the code through
 * openid-client (which checks `state`, `iss` and PKCE), and shows the browser a small
 * page saying whether it worked. The listener is closed whatever the outcome. The
 * result is plain data: pass it to `TokenManager.setTokens`.
 *
 * - A request to the listener with a missing or wrong `state` (another tab, a stale
 *   reload, a forged request) gets a 400 page and is otherwise ignored: the login keeps
 *   waiting for the real redirect, so nobody can end it from outside.
 * - An error redirect (e.g. `error=access_denied`) with the right `state`: `LoginError`.
 * - `timeoutMs` elapsed: `LoginError`. `signal` aborted: rejects at once with
 *   `signal.reason`. Invalid options: `ConfigurationError`.
 * - `prompt=consent` is sent when `offline_access` is requested: some providers
 *   (oidc-provider among them) issue no refresh token without it.
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
  checkLoginOptions(name, options);
  checkDuration(name, "timeoutMs", options.timeoutMs, 1);
  checkFunction(name, "openBrowser", options.openBrowser);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const openBrowser = options.openBrowser ?? openSystemBrowser;
  const { signal } = options;
  signal?.throwIfAborted();

  const config = await discoverForLogin(name, options);
  const scope = options.scope ?? DEFAULT_LOGIN_SCOPE;
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const codeChallenge = await oidc.calculatePKCECodeChallenge(codeVerifier);
  const state = oidc.randomState();

  let listener: Listener;
  try {
    listener = await startListener(state);
  } catch (cause) {
    throw new LoginError(`${name}: could not listen for the login redirect on 127.0.0.1`, { cause });
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  try {
    signal?.throwIfAborted();
    const parameters: Record<string, string> = {
      redirect_uri: listener.redirectUri,
      scope,
      code_challenge: codeChallenge,
      code_challenge_method: "S256",
      state,
    };
    if (scope.split(" ").includes("offline_access")) parameters.prompt = "consent";
    if (options.resource !== undefined) parameters.resource = options.resource;
    const authorizationUrl = oidc.buildAuthorizationUrl(config, parameters);

    // Everything that can end the wait other than the redirect itself.
    const interrupted = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new LoginError(`The browser login timed out after ${formatDuration(timeoutMs)}`)), timeoutMs);
      if (signal !== undefined) {
        onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      }
      Promise.resolve()
        .then(() => openBrowser(new URL(authorizationUrl)))
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

    const callback = await Promise.race([listener.callback, interrupted]);
    const response = await Promise.race([
      step(
        oidc.authorizationCodeGrant(
          config,
          callback.url,
          { pkceCodeVerifier: codeVerifier, expectedState: state },
          options.resource !== undefined ? { resource: options.resource } : undefined,
        ),
        signal,
        (error) => {
          const code = (error as { error?: unknown }).error;
          if (error instanceof oidc.AuthorizationResponseError && code === "access_denied") {
            return loginFailure("The browser login was denied at the identity provider (access_denied)", error);
          }
          if (error instanceof oidc.AuthorizationResponseError) {
            return loginFailure(`The identity provider refused the browser login (${String(code)})`, error);
          }
          return loginFailure(`The browser login failed: ${describeFailure(error)}`, error);
        },
      ),
      interrupted,
    ]);
    await listener.finish(true);
    return plainResponse(response);
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
    await listener.close();
  }
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

async function startListener(state: string): Promise<Listener> {
  let accepted: http.ServerResponse | undefined;
  let resolveCallback!: (value: { url: URL }) => void;
  const callback = new Promise<{ url: URL }>((resolve) => {
    resolveCallback = resolve;
  });

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (req.method !== "GET" || url.pathname !== CALLBACK_PATH) {
      void page(res, 404, "Not found", "This address only receives the login redirect.");
      return;
    }
    if (url.searchParams.get("state") !== state) {
      void page(res, 400, "Login not recognised", "This page does not belong to the login in progress. Go back to the application.");
      return;
    }
    if (accepted !== undefined) {
      void page(res, 400, "Login already handled", "This login has already been handled. You can close this window.");
      return;
    }
    accepted = res;
    resolveCallback({ url: new URL(`${url.pathname}${url.search}`, redirectUri) });
  });
  // A socket error must not crash the process; the login ends by its own rules.
  server.on("clientError", (_error, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const redirectUri = `http://127.0.0.1:${port}${CALLBACK_PATH}`;

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
function page(res: http.ServerResponse, status: number, title: string, text: string): Promise<void> {
  if (res.headersSent || res.destroyed) return Promise.resolve();
  const body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body style="font-family:system-ui,sans-serif;margin:3em"><h1>${title}</h1><p>${text}</p></body></html>`;
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
    connection: "close",
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
function openSystemBrowser(url: URL): Promise<void> {
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

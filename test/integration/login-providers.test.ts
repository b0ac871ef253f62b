/**
 * The browser login against providers stricter than RFC 8252 and OpenID Connect ask:
 * one that requires a `nonce` whenever `openid` is asked for (even in the code flow),
 * and one that matches redirect URIs exactly, port included (no any-port rule for
 * loopback). Both are the real test IdP, configured so (`requireNonce`,
 * `exactRedirectUris`); the wrong or missing nonce comes from the real IdP too, by
 * changing the authorization URL on its way to the browser.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import * as oidc from "openid-client";
import { ConfigurationError, type TokenEndpointResponse } from "../../src/index.js";
import { type BrowserLoginOptions, loginWithBrowser } from "../../src/node.js";
import { createHeadlessBrowser, type HeadlessPage } from "../support/headless-browser.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { assertLoginError, rejectionInto } from "../support/login-asserts.js";

const REDIRECT_PATH = "/oauth/done";

/** Requires a nonce whenever openid is asked for. */
let nonceIdp: Idp;
/** oidc-provider as it comes (a nonce is optional in the code flow), plus `test-cli-exact` for `exactRedirectUri`. */
let idp: Idp;
let fixedPort: number;
let exactRedirectUri: string;
const leaks = createLeakScanner();
const loginErrors: unknown[] = [];

/** A port nothing listens on right now (the OS's pick, released at once). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

before(async () => {
  fixedPort = await freePort();
  exactRedirectUri = `http://127.0.0.1:${fixedPort}${REDIRECT_PATH}`;
  [nonceIdp, idp] = await Promise.all([
    startIdp({ accessTokenTtl: 3600, requireNonce: true }),
    startIdp({ accessTokenTtl: 3600, exactRedirectUris: [exactRedirectUri] }),
  ]);
});

after(async () => {
  await Promise.all([nonceIdp.close(), idp.close()]);
});

const rejection = rejectionInto(loginErrors);

function remember(result: TokenEndpointResponse, page: HeadlessPage | undefined) {
  leaks.remember(result.access_token, result.refresh_token, result.id_token);
  for (const url of page?.visited ?? []) leaks.remember(url.searchParams.get("code") ?? undefined);
}

function idTokenClaims(result: TokenEndpointResponse): Record<string, unknown> {
  assert.equal(typeof result.id_token, "string", "an ID token");
  return JSON.parse(Buffer.from(String(result.id_token).split(".")[1] ?? "", "base64url").toString()) as Record<string, unknown>;
}

/**
 * A browser login the headless browser walks to the loopback listener; `tamper` may change
 * the authorization URL first. `opened` is the URL as the library built it.
 */
async function browserLogin(at: Idp, options: Partial<BrowserLoginOptions> = {}, tamper?: (url: URL) => void | Promise<void>) {
  const browser = createHeadlessBrowser();
  let walk: Promise<HeadlessPage> | undefined;
  let opened: URL | undefined;
  const login = loginWithBrowser({
    issuer: at.issuer,
    clientId: at.clientId,
    allowInsecureRequests: true,
    openBrowser: async (url) => {
      opened = new URL(url);
      await tamper?.(url);
      walk = browser.open(url);
    },
    ...options,
  });
  const settled: { result?: TokenEndpointResponse; error?: unknown } = await login.then(
    (result) => ({ result }),
    (error: unknown) => ({ error }),
  );
  const page = await walk?.catch(() => undefined);
  return { ...settled, page, opened };
}

describe("loginWithBrowser: nonce", () => {
  it("sends a nonce with the openid scope; a provider that requires one logs the user in, and the ID token carries it", async () => {
    const { result, error, page, opened } = await browserLogin(nonceIdp);
    assert.equal(error, undefined, `login failed: ${String(error)}`);
    assert.ok(result);
    remember(result, page);
    const nonce = opened?.searchParams.get("nonce") ?? "";
    assert.match(nonce, /^[\w-]{43}$/, "a random nonce (openid-client's randomNonce)");
    assert.equal(idTokenClaims(result).nonce, nonce);
    assert.equal(page?.status, 200);
  });

  it("sends a new nonce on every login", async () => {
    const first = await browserLogin(idp);
    const second = await browserLogin(idp);
    for (const { result, page } of [first, second]) if (result) remember(result, page);
    const nonces = [first, second].map(({ opened }) => opened?.searchParams.get("nonce"));
    assert.ok(nonces[0] && nonces[1], "both logins sent a nonce");
    assert.notEqual(nonces[0], nonces[1]);
  });

  it("refuses an ID token whose nonce is not the one sent (LoginError naming the nonce)", async () => {
    nonceIdp.resetStats();
    const { error, page } = await browserLogin(nonceIdp, {}, (url) => {
      assert.ok(url.searchParams.get("nonce"), "the authorization URL carries a nonce");
      // Another login's nonce: the real IdP signs an ID token carrying it.
      url.searchParams.set("nonce", oidc.randomNonce());
    });
    loginErrors.push(error);
    assertLoginError(error, /the ID token does not carry this login's nonce \(OAUTH_\w+\)/);
    // The code was exchanged: the refusal is openid-client's check of the ID token.
    assert.equal(nonceIdp.stats.byGrantType.authorization_code, 1);
    assert.equal(page?.status, 400);
  });

  it("refuses an ID token without the nonce sent (a provider that drops it): LoginError", async () => {
    idp.resetStats();
    const { result, error } = await browserLogin(idp, {}, (url) => url.searchParams.delete("nonce"));
    if (result) leaks.remember(result.access_token, result.refresh_token, result.id_token);
    loginErrors.push(error);
    assertLoginError(error, /the ID token does not carry this login's nonce \(OAUTH_\w+\)/);
    assert.equal(idp.stats.byGrantType.authorization_code, 1);
  });

  it("sends no nonce without the openid scope", async () => {
    const { result, error, page, opened } = await browserLogin(idp, { scope: "api" });
    assert.equal(error, undefined, `login failed: ${String(error)}`);
    assert.ok(result);
    remember(result, page);
    assert.equal(opened?.searchParams.has("nonce"), false);
    assert.equal(result.id_token, undefined);
  });
});

describe("loginWithBrowser: a fixed loopback redirect (redirectPort, redirectPath)", () => {
  const exact = () => ({ clientId: idp.exactClientId });

  it("logs in at a provider that matches the redirect URI exactly; only that path is answered", async () => {
    let strayStatus = 0;
    const { result, error, page, opened } = await browserLogin(
      idp,
      { ...exact(), redirectPort: fixedPort, redirectPath: REDIRECT_PATH, timeoutMs: 10_000 },
      async () => {
        // The default path on the same port is not the redirect any more.
        const stray = await fetch(`http://127.0.0.1:${fixedPort}/callback`);
        strayStatus = stray.status;
        await stray.body?.cancel();
      },
    );
    assert.equal(error, undefined, `login failed: ${String(error)}`);
    assert.ok(result);
    remember(result, page);
    assert.equal(opened?.searchParams.get("redirect_uri"), exactRedirectUri);
    assert.equal(page?.status, 200);
    assert.equal(`${page?.url.origin}${page?.url.pathname}`, exactRedirectUri);
    assert.equal(strayStatus, 404);
    assert.equal(typeof result.refresh_token, "string");
  });

  for (const [what, options] of [
    ["without redirectPort and redirectPath (any port, /callback)", {}],
    ["with redirectPort but the default path", { redirectPort: fixedPort }],
    ["with redirectPath but any port", { redirectPath: REDIRECT_PATH }],
  ] as const) {
    it(`${what}: the provider refuses the redirect URI and the login ends in a LoginError`, async () => {
      const { error, page, opened } = await browserLogin(idp, { ...exact(), timeoutMs: 1_500, ...options });
      loginErrors.push(error);
      assert.notEqual(opened?.searchParams.get("redirect_uri"), exactRedirectUri);
      // The provider shows its own error page: nothing comes back to the listener.
      assert.equal(page?.status, 400);
      assert.match(page?.text ?? "", /invalid_redirect_uri/);
      assertLoginError(error, /timed out/);
    });
  }

  it("a port in use: a LoginError naming the port, EADDRINUSE and what to do; no browser is opened", async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(fixedPort, "127.0.0.1", resolve));
    try {
      let opened = false;
      const err = await rejection(
        loginWithBrowser({
          issuer: idp.issuer,
          ...exact(),
          allowInsecureRequests: true,
          redirectPort: fixedPort,
          redirectPath: REDIRECT_PATH,
          timeoutMs: 2_000,
          openBrowser: () => {
            opened = true;
          },
        }),
      );
      assertLoginError(err, new RegExp(`port ${fixedPort} .*in use \\(EADDRINUSE\\)`));
      assert.match(err.message, /close the program|another port/);
      assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, "EADDRINUSE");
      assert.equal(opened, false);
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });

  it("refuses a redirectPort or redirectPath that cannot work with a ConfigurationError naming the option", async () => {
    const base = { issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, timeoutMs: 200, openBrowser: () => {} };
    for (const redirectPort of [-1, 65_536, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "8080", null]) {
      await assert.rejects(
        loginWithBrowser({ ...base, redirectPort } as never),
        (err: unknown) => err instanceof ConfigurationError && /`redirectPort`/.test(err.message),
        `redirectPort ${String(redirectPort)}`,
      );
    }
    for (const redirectPath of ["", "callback", "/a?b=1", "/a#b", "//evil.example/cb", "/a/../b", "/a b", "/a\\b", 7]) {
      await assert.rejects(
        loginWithBrowser({ ...base, redirectPath } as never),
        (err: unknown) => err instanceof ConfigurationError && /`redirectPath`/.test(err.message),
        `redirectPath ${String(redirectPath)}`,
      );
    }
  });
});

describe("login errors", () => {
  it("carry no token material", () => {
    assert.ok(leaks.count > 0, "tokens were remembered");
    assert.ok(loginErrors.length >= 5, `checked ${loginErrors.length} errors`);
    for (const err of loginErrors) leaks.assertClean(err, String((err as Error).message));
  });
});

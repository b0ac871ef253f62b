/**
 * The two logins against a real oidc-provider, headless: the device authorization
 * grant (approved / denied through the IdP's /device pages) and the browser login
 * (authorization code + PKCE, driven by a headless "browser" that follows the
 * authorization redirects to the loopback listener).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ConfigurationError, createTokenManager, loginWithDeviceCode, memoryStore } from "../../src/index.js";
import type { TokenEndpointResponse } from "../../src/index.js";
import { loginWithBrowser } from "../../src/node.js";
import { createHeadlessBrowser, type HeadlessPage } from "../support/headless-browser.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { assertLoginError, rejectionInto } from "../support/login-asserts.js";

let idp: Idp;
const leaks = createLeakScanner();
/** Every error a login rejected with, checked for token material at the end. */
const loginErrors: unknown[] = [];

before(async () => {
  idp = await startIdp({ accessTokenTtl: 3600 });
});

after(async () => {
  await idp.close();
});

const rejection = rejectionInto(loginErrors);

function rememberTokens(result: TokenEndpointResponse) {
  leaks.remember(result.access_token, result.refresh_token, result.id_token);
}

/** Authorization codes are secrets too: remember every one a headless browser carried. */
function rememberCodes(page: HeadlessPage | undefined) {
  for (const url of page?.visited ?? []) leaks.remember(url.searchParams.get("code") ?? undefined);
}

function assertPlainTokens(result: TokenEndpointResponse) {
  assert.equal(typeof result.access_token, "string");
  assert.equal(typeof result.refresh_token, "string");
  assert.equal(result.token_type?.toLowerCase(), "bearer");
  assert.equal(typeof result.expires_in, "number");
  for (const [key, value] of Object.entries(result)) assert.notEqual(typeof value, "function", key);
  assert.equal((result as { expiresIn?: unknown }).expiresIn, undefined, "openid-client helpers are dropped");
  assert.deepEqual(JSON.parse(JSON.stringify(result)), { ...result });
}

/** The login result works as a TokenManager's first token, and its refresh token refreshes. */
async function assertUsable(result: TokenEndpointResponse) {
  const tokens = createTokenManager({
    issuer: idp.issuer,
    clientId: idp.clientId,
    allowInsecureRequests: true,
    store: memoryStore(),
  });
  try {
    await tokens.setTokens(result);
    assert.equal(await tokens.getAccessToken(), result.access_token);
    const refreshed = await tokens.getAccessToken({ rejected: result.access_token });
    assert.notEqual(refreshed, result.access_token);
    leaks.remember(refreshed);
  } finally {
    tokens.close();
  }
}

function loopbackPort(authorizationUrl: URL): number {
  const redirect = new URL(authorizationUrl.searchParams.get("redirect_uri") ?? "");
  assert.match(redirect.href, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
  return Number(redirect.port);
}

async function assertPortClosed(port: number) {
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once("error", resolve);
  });
  assert.equal(error?.code, "ECONNREFUSED", `port ${port} still accepts connections`);
}

const base = () => ({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });

describe("loginWithDeviceCode", () => {
  it("logs in once the user approves, with tokens a TokenManager can use and refresh", async () => {
    idp.resetStats();
    let approval: Promise<void> | undefined;
    const infos: unknown[] = [];
    const result = await loginWithDeviceCode({
      ...base(),
      onUserCode: (info) => {
        infos.push(info);
        approval = idp.approveDeviceCode(info.userCode);
      },
    });
    await approval;
    rememberTokens(result);

    assert.equal(infos.length, 1);
    const info = infos[0] as { userCode: string; verificationUri: string; verificationUriComplete?: string; expiresIn: number };
    assert.match(info.userCode, /\S{4}/);
    assert.equal(info.verificationUri, `${idp.issuer}/device`);
    assert.equal(new URL(info.verificationUriComplete ?? "http://x").searchParams.get("user_code"), info.userCode);
    assert.ok(info.expiresIn > 0 && info.expiresIn <= 600);
    assertPlainTokens(result);
    assert.ok(idp.stats.byGrantType.device_code >= 1);
    await assertUsable(result);
  });

  it("sends the resource indicator when given", async () => {
    let approval: Promise<void> | undefined;
    const result = await loginWithDeviceCode({
      ...base(),
      resource: idp.audience,
      scope: "openid offline_access api",
      onUserCode: (info) => {
        approval = idp.approveDeviceCode(info.userCode);
      },
    });
    await approval;
    rememberTokens(result);
    const payload = JSON.parse(Buffer.from(result.access_token.split(".")[1] ?? "", "base64url").toString()) as {
      aud?: unknown;
    };
    assert.equal(payload.aud, idp.audience);
  });

  it("rejects with a LoginError when the user denies", async () => {
    let denial: Promise<void> | undefined;
    const err = await rejection(
      loginWithDeviceCode({
        ...base(),
        onUserCode: (info) => {
          denial = idp.denyDeviceCode(info.userCode);
        },
      }),
    );
    await denial;
    assertLoginError(err, /denied/);
  });

  it("rejects with a LoginError when the device code expires", async () => {
    const err = await rejection(
      loginWithDeviceCode({
        ...base(),
        onUserCode: (info) => {
          // Age the pending code at the IdP: its next poll answers expired_token.
          const normalized = info.userCode.replace(/[^A-Za-z0-9]/g, "").toUpperCase();
          const adapter = idp.provider.DeviceCode.adapter;
          void adapter.findByUserCode(normalized).then(async (payload) => {
            assert.ok(payload?.jti, "pending device code not found");
            await adapter.upsert(payload.jti, { ...payload, exp: Math.floor(Date.now() / 1000) - 1 }, 600);
          });
        },
      }),
    );
    assertLoginError(err, /expired/);
  });

  it("rejects at once with the signal's reason when aborted, and stops polling", async () => {
    idp.resetStats();
    const controller = new AbortController();
    const reason = new Error("user pressed Ctrl-C");
    let abortedAt = 0;
    const err = await rejection(
      loginWithDeviceCode({
        ...base(),
        signal: controller.signal,
        onUserCode: () => {
          setTimeout(() => {
            abortedAt = performance.now();
            controller.abort(reason);
          }, 50);
        },
      }),
    );
    const latency = performance.now() - abortedAt;
    assert.equal(err, reason);
    assert.ok(latency < 250, `rejected ${latency.toFixed(0)} ms after the abort`);
    // The IdP's interval is 1 s: a poll still running would have shown up by now.
    await sleep(1_500);
    assert.equal(idp.stats.byGrantType.device_code, 0);
  });

  it("rejects with the reason of an already aborted signal, before any request", async () => {
    idp.resetStats();
    const reason = new Error("never mind");
    const err = await rejection(
      loginWithDeviceCode({ ...base(), signal: AbortSignal.abort(reason), onUserCode: () => assert.fail("no code") }),
    );
    assert.equal(err, reason);
    assert.equal(idp.stats.tokenRequests, 0);
  });

  it("refuses options that cannot work with a ConfigurationError", async () => {
    const onUserCode = () => {};
    await assert.rejects(loginWithDeviceCode({ ...base(), clientId: "", onUserCode }), ConfigurationError);
    await assert.rejects(loginWithDeviceCode({ ...base(), issuer: "not a url", onUserCode }), ConfigurationError);
    await assert.rejects(
      loginWithDeviceCode({ issuer: idp.issuer, clientId: idp.clientId, onUserCode }),
      (err: unknown) => err instanceof ConfigurationError && /allowInsecureRequests/.test(err.message),
    );
  });

  it("names an unreachable issuer in a LoginError", async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as net.AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await rejection(loginWithDeviceCode({ ...base(), issuer: `http://127.0.0.1:${port}`, onUserCode: () => {} }));
    assertLoginError(err, /discovery of http:\/\/127\.0\.0\.1:\d+\/ failed: the identity provider could not be reached/);
  });
});

describe("loginWithBrowser", () => {
  it("logs in through the loopback redirect with PKCE S256 and shows a success page", async () => {
    idp.resetStats();
    const browser = createHeadlessBrowser();
    let walk: Promise<HeadlessPage> | undefined;
    let opened: URL | undefined;
    const result = await loginWithBrowser({
      ...base(),
      openBrowser: (url) => {
        opened = url;
        walk = browser.open(url);
      },
    });
    const page = await walk;
    rememberTokens(result);
    rememberCodes(page);

    assert.ok(opened);
    const port = loopbackPort(opened);
    const params = opened.searchParams;
    assert.equal(params.get("response_type"), "code");
    assert.equal(params.get("client_id"), idp.clientId);
    assert.equal(params.get("code_challenge_method"), "S256");
    assert.match(params.get("code_challenge") ?? "", /^[\w-]{43}$/);
    assert.ok((params.get("state") ?? "").length >= 22);
    assert.equal(params.get("scope"), "openid offline_access");
    assert.equal(params.get("prompt"), "consent");

    assert.equal(page?.status, 200);
    assert.match(page?.text ?? "", /You can close this window/);
    assert.equal(page?.url.port, String(port));
    assertPlainTokens(result);
    assert.equal(idp.stats.byGrantType.authorization_code, 1);
    await assertUsable(result);
    await assertPortClosed(port);
  });

  it("refuses a callback with a wrong or missing state (400) and keeps waiting for the real one", async () => {
    idp.resetStats();
    const browser = createHeadlessBrowser();
    const strays: HeadlessPage[] = [];
    let walk: Promise<HeadlessPage> | undefined;
    const result = await loginWithBrowser({
      ...base(),
      openBrowser: async (url) => {
        const redirect = new URL(url.searchParams.get("redirect_uri") ?? "");
        const forged = new URL(redirect);
        forged.search = new URLSearchParams({ code: "forged-code", state: "wrong-state", iss: idp.issuer }).toString();
        strays.push(await browser.open(forged));
        const stateless = new URL(redirect);
        stateless.search = "error=access_denied";
        strays.push(await browser.open(stateless));
        strays.push(await browser.open(new URL("/favicon.ico", redirect)));
        walk = browser.open(url);
      },
    });
    const page = await walk;
    rememberTokens(result);
    rememberCodes(page);

    assert.deepEqual(
      strays.map((p) => p.status),
      [400, 400, 404],
    );
    assert.match(strays[0]?.text ?? "", /does not belong to the login in progress/);
    assert.equal(page?.status, 200);
    assertPlainTokens(result);
    // The forged code never reached the token endpoint.
    assert.equal(idp.stats.byGrantType.authorization_code, 1);
  });

  it("rejects with a LoginError on an access_denied redirect and shows a failure page", async () => {
    const browser = createHeadlessBrowser();
    let walk: Promise<HeadlessPage> | undefined;
    let port = 0;
    const err = await rejection(
      loginWithBrowser({
        ...base(),
        openBrowser: (url) => {
          port = loopbackPort(url);
          // What the IdP sends when the user clicks "deny".
          const denied = new URL(url.searchParams.get("redirect_uri") ?? "");
          denied.search = new URLSearchParams({
            error: "access_denied",
            error_description: "End-User aborted interaction",
            state: url.searchParams.get("state") ?? "",
            iss: idp.issuer,
          }).toString();
          walk = browser.open(denied);
        },
      }),
    );
    assertLoginError(err, /denied at the identity provider \(access_denied\)/);
    const page = await walk;
    assert.equal(page?.status, 400);
    assert.match(page?.text ?? "", /did not complete/);
    await assertPortClosed(port);
  });

  it("rejects with a LoginError naming the IdP's error when the IdP redirects one", async () => {
    const browser = createHeadlessBrowser();
    let walk: Promise<HeadlessPage> | undefined;
    const err = await rejection(
      loginWithBrowser({
        ...base(),
        openBrowser: (url) => {
          // prompt=none without a session: oidc-provider redirects back with login_required.
          const silent = new URL(url);
          silent.searchParams.set("prompt", "none");
          silent.searchParams.set("scope", "openid");
          walk = browser.open(silent);
        },
      }),
    );
    assertLoginError(err, /refused the browser login \(login_required\)/);
    const page = await walk;
    assert.equal(page?.status, 400);
  });

  it("times out with a LoginError and closes the port", async () => {
    let port = 0;
    const started = performance.now();
    const err = await rejection(
      loginWithBrowser({
        ...base(),
        timeoutMs: 300,
        openBrowser: (url) => {
          port = loopbackPort(url);
        },
      }),
    );
    assertLoginError(err, /timed out after 300 ms/);
    assert.ok(performance.now() - started < 2_000);
    await assertPortClosed(port);
  });

  it("rejects at once with the signal's reason when aborted, and closes the port", async () => {
    const controller = new AbortController();
    const reason = new Error("user pressed Ctrl-C");
    let port = 0;
    let abortedAt = 0;
    const err = await rejection(
      loginWithBrowser({
        ...base(),
        signal: controller.signal,
        openBrowser: (url) => {
          port = loopbackPort(url);
          setTimeout(() => {
            abortedAt = performance.now();
            controller.abort(reason);
          }, 50);
        },
      }),
    );
    const latency = performance.now() - abortedAt;
    assert.equal(err, reason);
    assert.ok(latency < 250, `rejected ${latency.toFixed(0)} ms after the abort`);
    await assertPortClosed(port);
  });

  it("aborted during the code exchange: rejects at once, the browser gets the failure page, the port closes", async () => {
    idp.resetStats();
    idp.setTokenLatency(3_000);
    try {
      const controller = new AbortController();
      const reason = new Error("stop");
      const browser = createHeadlessBrowser();
      let walk: Promise<HeadlessPage> | undefined;
      let port = 0;
      const login = loginWithBrowser({
        ...base(),
        signal: controller.signal,
        openBrowser: (url) => {
          port = loopbackPort(url);
          walk = browser.open(url);
        },
      });
      const err = rejection(login);
      while (idp.stats.tokenRequests === 0) await sleep(5);
      const abortedAt = performance.now();
      controller.abort(reason);
      assert.equal(await err, reason);
      assert.ok(performance.now() - abortedAt < 250);
      const page = await walk;
      rememberCodes(page);
      assert.equal(page?.status, 400);
      assert.match(page?.text ?? "", /did not complete/);
      await assertPortClosed(port);
    } finally {
      idp.setTokenLatency(0);
    }
  });

  it("ends with a LoginError when the openBrowser callback fails, and closes the port", async () => {
    let port = 0;
    const err = await rejection(
      loginWithBrowser({
        ...base(),
        openBrowser: async (url) => {
          port = loopbackPort(url);
          throw new Error("no display");
        },
      }),
    );
    assertLoginError(err, /openBrowser callback failed/);
    assert.equal((err.cause as Error).message, "no display");
    await assertPortClosed(port);
  });

  it("by default opens the system browser; when none can be started, fails at once with a LoginError", {
    skip: process.platform === "win32" ? "uses PATH to hide the launcher" : false,
  }, async () => {
    const empty = mkdtempSync(join(tmpdir(), "no-launcher-"));
    const path = process.env.PATH;
    process.env.PATH = empty;
    try {
      const started = performance.now();
      const err = await rejection(loginWithBrowser({ ...base(), timeoutMs: 10_000 }));
      assertLoginError(err, /Could not open a browser for the login \(spawn (xdg-)?open ENOENT\): pass `openBrowser`/);
      assert.ok(performance.now() - started < 2_000);
    } finally {
      process.env.PATH = path;
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it("refuses options that cannot work with a ConfigurationError", async () => {
    await assert.rejects(loginWithBrowser({ ...base(), timeoutMs: 0 }), ConfigurationError);
    await assert.rejects(loginWithBrowser({ ...base(), clientId: undefined as unknown as string }), ConfigurationError);
  });
});

describe("login errors", () => {
  it("carry no token material", () => {
    assert.ok(leaks.count > 0, "tokens were remembered");
    assert.ok(loginErrors.length >= 10, `checked ${loginErrors.length} errors`);
    for (const err of loginErrors) leaks.assertClean(err, String((err as Error).message));
  });
});

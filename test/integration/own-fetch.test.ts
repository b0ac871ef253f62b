/**
 * Your own `fetch` (issue 17 item 3) on real parts: every request of the token manager, both
 * logins and the token exchange to the identity provider goes through the
 * `fetch` given — through a real HTTP proxy (Debian's tinyproxy, whose log shows what it
 * forwarded), to a provider behind a private CA (served over HTTPS with a certificate from
 * `openssl`, trusted by one client only, not the process), and with a client certificate
 * (mTLS). A `fetch` that is no function is a `ConfigurationError` at once; one that throws
 * is a `TokenRefreshError` (refresh) or a `LoginError` (login), with no token in any cause.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  ConfigurationError,
  type CustomFetch,
  createTokenExchange,
  createTokenManager,
  LoginError,
  loginWithDeviceCode,
  TokenRefreshError,
} from "../../src/index.js";
import { loginWithBrowser } from "../../src/node.js";
import { createHeadlessBrowser, type HeadlessPage } from "../support/headless-browser.js";
import { type Idp, startIdp } from "../support/idp.js";
import { startIdpProxy } from "../support/idp-proxy.js";
import { createLeakScanner } from "../support/leaks.js";
import { nodeFetch } from "../support/node-fetch.js";
import { createPrivateCa, type PrivateCa } from "../support/private-ca.js";
import { startTinyproxy, type Tinyproxy } from "../support/tinyproxy.js";

const EVENTS = "https://events.example.test";

async function rejects(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  return assert.fail("expected a rejection");
}

describe("your own fetch", () => {
  let idp: Idp;
  let proxy: Tinyproxy;
  let ca: PrivateCa;
  const leaks = createLeakScanner();

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 60, tokenExchange: { targets: [EVENTS] } });
    proxy = await startTinyproxy();
    ca = createPrivateCa();
  });
  after(async () => {
    await proxy?.close();
    await idp?.close();
  });

  it("a `fetch` that is no function is a ConfigurationError at once, for every entry", async () => {
    await using counting = Object.assign(await startIdpProxy(idp.issuer), { [Symbol.asyncDispose]: () => counting.close() });
    const base = { issuer: counting.origin, clientId: idp.clientId, allowInsecureRequests: true, fetch: "fetch" as never };
    assert.throws(() => createTokenManager(base), ConfigurationError);
    assert.throws(() => createTokenManager(base), /`fetch` must be a function/);
    assert.throws(() => createTokenExchange({ ...base, subject: () => "t", audience: EVENTS }), /`fetch` must be a function/);
    for (const login of [loginWithDeviceCode({ ...base, onUserCode: () => {} }), loginWithBrowser({ ...base, openBrowser: () => {} })]) {
      const error = await rejects(login);
      assert.ok(error instanceof ConfigurationError, String(error));
      assert.match((error as Error).message, /`fetch` must be a function/);
    }
    assert.equal(counting.requests, 0, "nothing was asked of the identity provider");
  });

  it("through a real HTTP proxy: the manager's discovery and refresh", async () => {
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token);
    const seen = proxy.requests().length;
    using tokens = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      fetch: nodeFetch({ proxy: proxy.url }),
    });
    await tokens.setTokens(login);
    const refreshed = await tokens.getAccessToken({ rejected: login.access_token }); // a forced refresh
    assert.notEqual(refreshed, login.access_token);
    assert.deepEqual(proxy.requests().slice(seen), [`GET ${idp.issuer}/.well-known/openid-configuration`, `POST ${idp.issuer}/token`]);
  });

  it("through a real HTTP proxy: the device code login, and the token exchange", async () => {
    const proxied = nodeFetch({ proxy: proxy.url });
    const seen = proxy.requests().length;
    let approval: Promise<void> | undefined;
    const result = await loginWithDeviceCode({
      issuer: idp.issuer,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      fetch: proxied,
      onUserCode: (info) => {
        approval = idp.approveDeviceCode(info.userCode); // the user, in a browser: not through the proxy
      },
    });
    await approval;
    leaks.remember(result.access_token, result.refresh_token);
    const login = proxy.requests().slice(seen);
    assert.equal(login[0], `GET ${idp.issuer}/.well-known/openid-configuration`);
    assert.equal(login[1], `POST ${idp.issuer}/device/auth`);
    assert.ok(login.length >= 3 && login.slice(2).every((r) => r === `POST ${idp.issuer}/token`), login.join(", "));

    const beforeExchange = proxy.requests().length;
    const events = createTokenExchange({
      issuer: idp.issuer,
      clientId: idp.serviceClient.clientId,
      clientSecret: idp.serviceClient.clientSecret,
      allowInsecureRequests: true,
      subject: () => result.access_token,
      audience: EVENTS,
      fetch: proxied,
    });
    assert.ok(await events.getAccessToken());
    assert.deepEqual(proxy.requests().slice(beforeExchange), [
      `GET ${idp.issuer}/.well-known/openid-configuration`,
      `POST ${idp.issuer}/token`,
    ]);
  });

  it("through a real HTTP proxy: the browser login's discovery and code exchange (the browser itself goes direct)", async () => {
    const seen = proxy.requests().length;
    const browser = createHeadlessBrowser();
    let walk: Promise<HeadlessPage> | undefined;
    const result = await loginWithBrowser({
      issuer: idp.issuer,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      fetch: nodeFetch({ proxy: proxy.url }),
      openBrowser: (url) => {
        walk = browser.open(url);
      },
    });
    await walk;
    leaks.remember(result.access_token, result.refresh_token);
    assert.deepEqual(proxy.requests().slice(seen), [`GET ${idp.issuer}/.well-known/openid-configuration`, `POST ${idp.issuer}/token`]);
  });

  it("a private CA: a manager whose fetch trusts it gets tokens; one without it fails, saying why", async () => {
    await using https = await startHttpsIdp(idp, ca);
    const service = { issuer: https.origin, clientId: idp.serviceClient.clientId, clientSecret: idp.serviceClient.clientSecret };
    using trusting = createTokenManager({ ...service, grant: "client_credentials", fetch: nodeFetch({ ca: ca.ca }) });
    assert.ok(await trusting.getAccessToken());
    assert.ok(https.requests >= 2, "discovery and the token request went to the HTTPS provider");

    using plain = createTokenManager({ ...service, grant: "client_credentials" });
    const error = await rejects(plain.getAccessToken());
    assert.ok(error instanceof TokenRefreshError, String(error));
    assert.match(
      (error as Error).message,
      /TLS certificate is not trusted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)\)/,
    );
    assert.match((error as Error).message, /`fetch` of your own/);
  });

  it("mTLS: a provider asking for a client certificate takes the one the fetch presents", async () => {
    await using mtls = await startHttpsIdp(idp, ca, { clientCa: ca.ca });
    const service = { issuer: mtls.origin, clientId: idp.serviceClient.clientId, clientSecret: idp.serviceClient.clientSecret };
    using withCertificate = createTokenManager({
      ...service,
      grant: "client_credentials",
      fetch: nodeFetch({ ca: ca.ca, cert: ca.client.cert, key: ca.client.key }),
    });
    assert.ok(await withCertificate.getAccessToken());

    using without = createTokenManager({ ...service, grant: "client_credentials", fetch: nodeFetch({ ca: ca.ca }) });
    assert.ok((await rejects(without.getAccessToken())) instanceof TokenRefreshError);
  });

  it("a fetch that throws: a TokenRefreshError for a refresh, a LoginError for a login, no token in either", async () => {
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token);
    // Injected fault: a fetch that fails the token request at once, quoting what it was sent.
    const failing: CustomFetch = (url, init) => {
      if (init.method !== "POST") return fetch(url, init);
      throw new Error(`refused to send ${String(init.body)}`);
    };
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, fetch: failing });
    await tokens.setTokens(login);
    const refreshError = await rejects(tokens.getAccessToken({ rejected: login.access_token }));
    assert.ok(refreshError instanceof TokenRefreshError, String(refreshError));
    leaks.assertClean(refreshError, "the refresh error");

    const loginError = await rejects(
      loginWithDeviceCode({
        issuer: idp.issuer,
        clientId: idp.clientId,
        allowInsecureRequests: true,
        fetch: failing,
        onUserCode: () => {},
      }),
    );
    assert.ok(loginError instanceof LoginError, String(loginError));
    leaks.assertClean(loginError, "the login error");
    assert.doesNotMatch(String((loginError as Error).cause), /refused to send/);
  });
});

/** The test provider served over HTTPS with a certificate of the private CA (a TLS proxy in front of it). */
async function startHttpsIdp(idp: Idp, ca: PrivateCa, options: { clientCa?: string } = {}) {
  const proxy = await startIdpProxy(idp.issuer, { ...ca.server, ...options });
  return Object.assign(proxy, { [Symbol.asyncDispose]: () => proxy.close() });
}

/**
 * The `connect-oidc` entry in a real browser: headless Chromium (Debian's `chromium`) runs
 * a page bundled with esbuild (support/browser-page.ts) that calls the test server through
 * connect-web's `createConnectTransport` with `createAuthInterceptor` and
 * `createTokenManager` (memory store). The server (connect-node, HTTP/1.1) sits behind a
 * CORS proxy; the test IdP (oidc-provider) answers CORS itself. The page shows injection,
 * a proactive refresh (3 s tokens), a reactive retry after a server-side revocation, and a
 * failed refresh surfacing as Unauthenticated, and POSTs what it saw back to the test.
 *
 * Skips when Chromium is not installed, except under CI=true (.ci/run installs it).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import {
  type Browser,
  findChromium,
  launchChromium,
  type LoopbackServer,
  startCorsProxy,
  startPageServer,
} from "../support/browser-harness.js";
import type { PageConfig, PageResults, PageStep } from "../support/browser-page.js";
import { boundLogin } from "../support/dpop-bound-login.js";
import type { LoginKeyJwk } from "../support/dpop-login.js";
import { type Idp, startIdp, TEST_ACCOUNT } from "../support/idp.js";
import { type RecordedRequest, startServer, type TestServer } from "../support/server.js";

const chromium = findChromium();
const unavailable = chromium === undefined ? "chromium is not installed (Debian: apt-get install chromium; .ci/run does)" : undefined;
if (unavailable !== undefined && process.env.CI === "true") {
  test("Chromium is available in CI", () => assert.fail(unavailable));
}

const pageEntry = fileURLToPath(new URL("../support/browser-page.ts", import.meta.url));

for (const dpop of [false, true]) {
  describe(`connect-oidc in headless Chromium (connect-web)${dpop ? " with DPoP" : ""}`, { skip: unavailable }, () => {
    let idp: Idp;
    let server: TestServer;
    let proxy: Awaited<ReturnType<typeof startCorsProxy>>;
    let page: LoopbackServer;
    let browser: Browser | undefined;
    let results: PageResults;
    const revoked: string[] = [];
    let bundleInputs: string[] = [];
    let bundleBytes = 0;

    before(async () => {
      const bundled = await build({
        entryPoints: [pageEntry],
        bundle: true,
        platform: "browser",
        format: "esm",
        target: "chrome120",
        write: false,
        metafile: true,
        logLevel: "silent",
      });
      bundleInputs = Object.keys(bundled.metafile.inputs);
      const script = bundled.outputFiles[0]!.text;
      bundleBytes = script.length;

      // DPoP: the IdP and the server demand nonces; the browser reads DPoP-Nonce through CORS.
      const dpopOption = dpop ? { dpop: { requireNonce: true } } : {};
      idp = await startIdp({ accessTokenTtl: 3, ...dpopOption });
      server = await startServer({ idp, http2: false, ...dpopOption });
      proxy = await startCorsProxy(server.baseUrl);
      let delivered: (value: PageResults) => void = () => {};
      const delivery = new Promise<PageResults>((resolve) => {
        delivered = resolve;
      });
      page = await startPageServer(script, {
        // The login is made when the page asks for it, not before Chromium starts: its 3 s
        // token must still be valid when the page's first call carries it (a slow start on
        // a loaded machine used to hand the page a token the server found expired).
        "GET /config": async (): Promise<PageConfig> => {
          const { login, dpopJwk } = await loginFor(idp, dpop);
          return {
            issuer: idp.issuer,
            clientId: idp.clientId,
            api: proxy.url,
            login: { ...login } as PageConfig["login"],
            ...(dpopJwk !== undefined ? { dpopJwk } : {}),
          };
        },
        "POST /revoke": (body) => {
          const { token } = JSON.parse(body) as { token: string };
          server.revoke(token);
          revoked.push(token);
        },
        "POST /end-login": () => idp.revokeGrant(),
        "POST /results": (body) => delivered(JSON.parse(body) as PageResults),
      });
      browser = await launchChromium(chromium!, page.url);
      const exited = browser.exited.then((code) => {
        throw new Error(`Chromium exited (${code}) before the page reported:\n${browser?.output()}`);
      });
      const timeout = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`no results from the page within 60 s:\n${browser?.output()}`)), 60_000).unref(),
      );
      results = await Promise.race([delivery, exited, timeout]);
    });

    after(async () => {
      await browser?.stop();
      await page?.close();
      await proxy?.close();
      await server?.close();
      await idp?.close();
    });

    const stepNamed = (name: PageStep["name"]): PageStep => {
      assert.equal(results.error, undefined, `the page failed: ${results.error}`);
      const found = results.steps.find((s) => s.name === name);
      assert.ok(found, `no step ${name} in ${JSON.stringify(results)}`);
      return found;
    };
    /** The server's records of the Say calls sent with this token (by fingerprint). */
    const callsWith = (hash: string | undefined): RecordedRequest[] =>
      server.stats.requests.filter((r) => r.path.endsWith("/Say") && r.tokenHash === hash);

    test("the page is bundled for the browser without Node built-ins", (t) => {
      assert.ok(bundleInputs.some((i) => i.includes("@connectrpc/connect-web")));
      assert.ok(bundleInputs.some((i) => i.includes("openid-client")));
      assert.ok(!bundleInputs.some((i) => i.startsWith("node:") || i.includes("src/node")), bundleInputs.join("\n"));
      t.diagnostic(`bundle ${(bundleBytes / 1024).toFixed(0)} KiB from ${bundleInputs.length} modules`);
    });

    test("it ran in Chromium, through CORS", (t) => {
      assert.match(results.userAgent, /HeadlessChrome\//);
      assert.ok(proxy.stats.preflights >= 4, `preflights: ${proxy.stats.preflights}`);
      assert.deepEqual([...proxy.stats.origins], [page.url]);
      t.diagnostic(`${results.userAgent.match(/HeadlessChrome\/\S+/)?.[0]}; ${proxy.stats.preflights} preflights`);
    });

    test("injection: the call carries the manager's token and the server accepts it", () => {
      const step = stepNamed("injection");
      assert.equal(step.ok, true, step.message);
      assert.equal(step.subject, TEST_ACCOUNT, "the server saw the test user's token");
      // With DPoP the first call meets the server's nonce demand and is re-sent once with it.
      assert.deepEqual(
        callsWith(step.tokenBefore).map((r) => [r.auth, r.dpop?.reason]),
        dpop
          ? [
              ["rejected", "nonce-missing"],
              ["accepted", undefined],
            ]
          : [["accepted", undefined]],
      );
    });

    test("proactive refresh: a new token arrives in the background and the next call uses it", (t) => {
      const first = stepNamed("injection");
      const step = stepNamed("proactive");
      assert.equal(step.ok, true, step.message);
      assert.ok(step.events.includes("refreshed:proactive"), step.events.join(", "));
      assert.notEqual(step.tokenBefore, first.tokenBefore, "a new token");
      assert.equal(callsWith(step.tokenBefore)[0]?.auth, "accepted");
      t.diagnostic(`refreshed after ${step.ms} ms`);
    });

    test("reactive retry: a revoked token is refused, a new one fetched, the call re-sent once and accepted", () => {
      const step = stepNamed("reactive");
      assert.equal(step.ok, true, step.message);
      assert.ok(step.events.includes("refreshed:rejected"), step.events.join(", "));
      assert.notEqual(step.tokenAfter, step.tokenBefore);
      assert.deepEqual(
        callsWith(step.tokenBefore).map((r) => [r.auth, r.reason]),
        [["rejected", "revoked"]],
      );
      assert.deepEqual(
        callsWith(step.tokenAfter).map((r) => r.auth),
        ["accepted"],
      );
    });

    test("refresh failure: a dead login ends the call Unauthenticated with ReauthRequiredError as its cause", () => {
      const step = stepNamed("failure");
      assert.equal(step.ok, false, "the call must fail");
      assert.equal(step.code, "Unauthenticated");
      assert.equal(step.causeCode, "ERR_REAUTH_REQUIRED");
      assert.ok(step.events.includes("reauth-required"), step.events.join(", "));
      assert.deepEqual(
        callsWith(step.tokenBefore).map((r) => [r.auth, r.reason]),
        [["rejected", "revoked"]],
        "sent once, refused, not re-sent",
      );
      assert.ok(idp.stats.invalidGrant >= 1, "the IdP refused the refresh");
    });

    test("no token in what the page reported", () => {
      const text = JSON.stringify(results);
      for (const token of revoked) assert.ok(!text.includes(token));
    });
  });
}

/** A login of the test client; with DPoP bound to a new ES256 key, handed to the page as JWKs. */
async function loginFor(idp: Idp, dpop: boolean): Promise<{ login: object; dpopJwk?: LoginKeyJwk }> {
  if (!dpop) return { login: await idp.login() };
  const { login, dpopJwk } = await boundLogin(idp);
  return { login, dpopJwk };
}

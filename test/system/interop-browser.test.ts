/**
 * connect-web in a real browser (headless Chromium, Debian's `chromium`) against a server
 * built with `connect-oidc/testing`'s startTestServer (connect-node behind connect-oidc/server,
 * through a CORS proxy): the page (support/interop-browser-page.ts) uses nothing of
 * connect-oidc, only a fixed `authorization` header, over the Connect and gRPC-web protocols.
 * A valid token passes; no token and a garbage token are Unauthenticated, and the browser
 * reads the `WWW-Authenticate` challenge. Skips without Chromium, except under CI=true.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { ConnectRouter } from "@connectrpc/connect";
import { build } from "esbuild";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { verifiedTokenKey } from "../../src/server.js";
import { startTestIdentityProvider, startTestServer, type TestIdentityProvider, type TestServer } from "../../src/testing.js";
import {
  type Browser,
  findChromium,
  launchChromium,
  type LoopbackServer,
  startCorsProxy,
  startPageServer,
} from "../support/browser-harness.js";
import type { InteropPageConfig, InteropResults } from "../support/interop-browser-page.js";

const chromium = findChromium();
const unavailable = chromium === undefined ? "chromium is not installed (Debian: apt-get install chromium; .ci/run does)" : undefined;
if (unavailable !== undefined && process.env.CI === "true") {
  test("Chromium is available in CI", () => assert.fail(unavailable));
}

const pageEntry = fileURLToPath(new URL("../support/interop-browser-page.ts", import.meta.url));
const routes = (router: ConnectRouter) =>
  router.service(EchoService, { say: (_req, ctx) => ({ subject: ctx.values.get(verifiedTokenKey)?.subject ?? "" }) });

describe("connect-web in headless Chromium against startTestServer", { skip: unavailable }, () => {
  let idp: TestIdentityProvider;
  let server: TestServer;
  let proxy: LoopbackServer;
  let page: LoopbackServer;
  let browser: Browser | undefined;
  let results: InteropResults;

  before(async () => {
    const bundled = await build({
      entryPoints: [pageEntry],
      bundle: true,
      platform: "browser",
      format: "esm",
      target: "chrome120",
      write: false,
      logLevel: "silent",
    });
    idp = await startTestIdentityProvider({ accessTokenTtl: 600 });
    server = await startTestServer({ identityProvider: idp, routes });
    proxy = await startCorsProxy(server.baseUrl);
    const { access_token: token } = await idp.login();
    let delivered: (value: InteropResults) => void = () => {};
    const delivery = new Promise<InteropResults>((resolve) => {
      delivered = resolve;
    });
    page = await startPageServer(bundled.outputFiles[0]!.text, {
      "GET /config": (): InteropPageConfig => ({ api: proxy.url, token }),
      "POST /results": (body) => delivered(JSON.parse(body) as InteropResults),
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

  test("a valid bearer token passes; none or a garbage one is Unauthenticated with the challenge, over Connect and gRPC-web", () => {
    assert.equal(results.error, undefined, `the page failed: ${results.error}`);
    assert.match(results.userAgent, /HeadlessChrome\//);
    const seen = results.outcomes.map((o) => [o.transport, o.header, o.subject ?? o.code, o.challenge ?? null]);
    assert.deepEqual(seen, [
      ["connect", "valid", idp.accountId, null],
      ["connect", "none", "Unauthenticated", "Bearer"],
      ["connect", "garbage", "Unauthenticated", 'Bearer error="invalid_token", error_description="opaque"'],
      ["grpc-web", "valid", idp.accountId, null],
      ["grpc-web", "none", "Unauthenticated", "Bearer"],
      ["grpc-web", "garbage", "Unauthenticated", 'Bearer error="invalid_token", error_description="opaque"'],
    ]);
  });
});

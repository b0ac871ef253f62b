/**
 * Both logins against hostile or broken input: options that cannot work, identity
 * provider answers openid-client refuses (the tokens must not ride along in the error),
 * whatever a local process or a web page sends to the loopback listener, and lifetimes
 * too long for setTimeout.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import { ConfigurationError, LoginError, loginWithDeviceCode } from "../src/index.js";
import { loginWithBrowser } from "../src/node.js";
import { createHeadlessBrowser, type HeadlessPage } from "./support/headless-browser.js";
import { type Idp, startIdp } from "./support/idp.js";

let idp: Idp;
let proxy: FaultProxy;

before(async () => {
  idp = await startIdp({ accessTokenTtl: 3600 });
  proxy = await startFaultProxy(idp.issuer);
});

/** What the fault proxy changes in the real IdP's answers; each test sets what it needs and clears it. */
interface Faults {
  /** Change a successful token response body (the real IdP's real tokens). */
  tokenResponse?: (body: Record<string, unknown>) => void;
  /** The `iss` of the authorization response redirected to the loopback listener. Default: the proxy's issuer. */
  authorizationIss?: string;
}

interface FaultProxy {
  /** Use this as the login's issuer: the real IdP behind a proxy that applies `faults`. */
  readonly issuer: string;
  readonly faults: Faults;
  /** Every token and authorization code that went through the proxy since the last reset. */
  readonly secrets: string[];
  close(): Promise<void>;
}

/**
 * The real IdP cannot send a malformed 200 token response, nor redirect with another
 * issuer's `iss`: a loopback proxy relays every request to it and changes only what a
 * test asks for. It stands in for the issuer (discovery and redirects name the proxy), and
 * drops the ID token from a tampered token response (its `iss` names the IdP behind it,
 * which openid-client would refuse before it looks at `token_type`).
 */
async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const faults: Faults = {};
  const secrets: string[] = [];
  const upstreamOrigin = new URL(upstream).origin;
  let origin = "";
  const server = http.createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (value === undefined || ["host", "connection", "content-length"].includes(name)) continue;
        headers.set(name, Array.isArray(value) ? value.join(", ") : value);
      }
      const answer = await fetch(`${upstreamOrigin}${req.url ?? "/"}`, {
        method: req.method ?? "GET",
        headers,
        redirect: "manual",
        ...(chunks.length > 0 ? { body: Buffer.concat(chunks) } : {}),
      });
      let body = Buffer.from(await answer.arrayBuffer());
      const out: http.OutgoingHttpHeaders = {};
      answer.headers.forEach((value, name) => {
        if (!["content-length", "content-encoding", "transfer-encoding", "connection", "set-cookie"].includes(name)) out[name] = value;
      });
      out["set-cookie"] = answer.headers.getSetCookie();
      const location = answer.headers.get("location");
      if (location !== null) {
        const target = new URL(location.replaceAll(upstreamOrigin, origin), origin);
        if (target.pathname === "/callback" && target.searchParams.has("iss")) {
          secrets.push(target.searchParams.get("code") ?? "");
          target.searchParams.set("iss", faults.authorizationIss ?? origin);
        }
        out.location = target.href;
      }
      const json = (answer.headers.get("content-type") ?? "").includes("json");
      if (json && req.url === "/.well-known/openid-configuration") {
        body = Buffer.from(body.toString("utf8").replaceAll(upstreamOrigin, origin));
      }
      if (json && req.method === "POST" && answer.status === 200 && faults.tokenResponse && /\/token$/.test(req.url ?? "")) {
        const tokens = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
        for (const key of ["access_token", "refresh_token", "id_token"]) {
          if (typeof tokens[key] === "string") secrets.push(tokens[key]);
        }
        delete tokens.id_token;
        faults.tokenResponse(tokens);
        body = Buffer.from(JSON.stringify(tokens));
      }
      res.writeHead(answer.status, out);
      res.end(body);
    })().catch((error: unknown) => {
      res.writeHead(502, { "content-type": "text/plain" });
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer: origin,
    faults,
    secrets,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

after(async () => {
  await proxy.close();
  await idp.close();
});

const base = () => ({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });

describe("login options", () => {
  it("refuses a non-http(s) issuer, a bad scope, resource or signal with a ConfigurationError naming the option", async () => {
    const onUserCode = () => {};
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ issuer: "ftp://127.0.0.1/" }, /`issuer` must be an https:\/\/ URL/],
      [{ issuer: 42 }, /`issuer` must be a string or URL/],
      [{ allowInsecureRequests: "yes" }, /allowInsecureRequests: true/],
      [{ scope: 42 }, /`scope` must be a non-empty string/],
      [{ scope: "" }, /`scope` must be a non-empty string/],
      [{ resource: ["urn:a"] }, /`resource` must be a non-empty string/],
      [{ signal: { aborted: false } }, /`signal` must be an AbortSignal/],
    ];
    for (const [bad, message] of cases) {
      for (const login of [
        () => loginWithDeviceCode({ ...base(), onUserCode, ...bad } as never),
        () => loginWithBrowser({ ...base(), openBrowser: () => {}, timeoutMs: 1_000, ...bad } as never),
      ]) {
        await assert.rejects(login(), (err: unknown) => {
          assert.ok(err instanceof ConfigurationError, `${JSON.stringify(bad)}: ${String(err)}`);
          assert.match(err.message, message);
          return true;
        });
      }
    }
  });
});

/** Neither the error nor anything in its cause chain, printed or serialized, holds a secret. */
function assertTokenFree(err: unknown, label: string) {
  const texts = [inspect(err, { depth: Number.POSITIVE_INFINITY }), inspect(err, { depth: Number.POSITIVE_INFINITY, showHidden: true })];
  for (let e: unknown = err, hops = 0; e !== undefined && e !== null && hops < 20; e = (e as { cause?: unknown }).cause, hops++) {
    texts.push(JSON.stringify(e, Object.getOwnPropertyNames(e)) ?? "", JSON.stringify(e) ?? "", String(e));
  }
  const fragments = proxy.secrets.flatMap((secret) => [secret, ...secret.split(".")]).filter((part) => part.length >= 16);
  assert.ok(fragments.length > 0, `${label}: no secret was handed out`);
  for (const text of texts) {
    for (const fragment of fragments) assert.ok(!text.includes(fragment), `${label}: the error holds a token or code`);
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail("expected a rejection");
}

/** A device login the test IdP approves as soon as the user code is shown. */
async function deviceLogin(options: Partial<Parameters<typeof loginWithDeviceCode>[0]> = {}) {
  let approval: Promise<void> | undefined;
  try {
    return await loginWithDeviceCode({
      ...base(),
      onUserCode: (info) => {
        approval = idp.approveDeviceCode(info.userCode);
      },
      ...options,
    });
  } finally {
    await approval;
  }
}

/** A browser login the headless browser walks through to the loopback redirect. */
async function browserLogin(options: Partial<Parameters<typeof loginWithBrowser>[0]> = {}) {
  const browser = createHeadlessBrowser();
  let walk: Promise<HeadlessPage> | undefined;
  try {
    return await loginWithBrowser({
      ...base(),
      openBrowser: (url) => {
        walk = browser.open(url);
      },
      ...options,
    });
  } finally {
    await walk?.catch(() => undefined);
  }
}

const malformedTokenResponses: [string, (body: Record<string, unknown>) => void][] = [
  ["an unknown token_type", (body) => (body.token_type = "weird")],
  ["a negative expires_in", (body) => (body.expires_in = -5)],
  ["a non-numeric expires_in", (body) => (body.expires_in = "soon")],
  ["token_type weird and expires_in -5", (body) => Object.assign(body, { token_type: "weird", expires_in: -5 })],
];

describe("login errors hold no token", () => {
  for (const [what, fault] of malformedTokenResponses) {
    for (const [flow, login] of [
      ["loginWithDeviceCode", deviceLogin],
      ["loginWithBrowser", browserLogin],
    ] as const) {
      it(`${flow}: a 200 token response with ${what} ends in a LoginError whose cause holds no token`, async () => {
        proxy.secrets.length = 0;
        proxy.faults.tokenResponse = fault;
        try {
          const err = await rejection(login({ issuer: proxy.issuer }));
          assert.ok(err instanceof LoginError, String(err));
          assert.match(err.message, /failed: the request failed \(OAUTH_\w+\)/);
          assert.ok(err.cause instanceof Error);
          assert.match((err.cause as { code?: string }).code ?? "", /^OAUTH_/);
          assertTokenFree(err, `${flow}, ${what}`);
        } finally {
          delete proxy.faults.tokenResponse;
        }
      });
    }
  }

  it("loginWithBrowser: an authorization response with another issuer's iss ends in a LoginError whose cause holds no code", async () => {
    proxy.secrets.length = 0;
    idp.resetStats();
    proxy.faults.authorizationIss = "https://mix-up.example";
    try {
      const err = await rejection(browserLogin({ issuer: proxy.issuer }));
      assert.ok(err instanceof LoginError, String(err));
      assert.match(err.message, /The browser login failed: the request failed \(OAUTH_\w+\)/);
      assertTokenFree(err, "iss mismatch");
      assert.equal(idp.stats.byGrantType.authorization_code, 0, "the code never reached the token endpoint");
    } finally {
      delete proxy.faults.authorizationIss;
    }
  });
});

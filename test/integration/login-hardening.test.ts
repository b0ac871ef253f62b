/**
 * Both logins against hostile or broken input: options that cannot work, identity
 * provider answers openid-client refuses (the tokens must not ride along in the error),
 * whatever a local process or a web page sends to the loopback listener, and lifetimes
 * too long for setTimeout.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import {
  ConfigurationError,
  type DeviceCodeInfo,
  type DeviceCodeLoginOptions,
  LoginError,
  loginWithDeviceCode,
  ProviderConfigurationError,
} from "../../src/index.js";
import { loginWithBrowser } from "../../src/node.js";
import { createHeadlessBrowser, type HeadlessPage } from "../support/headless-browser.js";
import { type Idp, startIdp } from "../support/idp.js";
import { rejectionInto } from "../support/login-asserts.js";

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
  /** Change a successful device authorization response body. */
  deviceAuthorizationResponse?: (body: Record<string, unknown>) => void;
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
 * drops the ID token from every token response (its `iss` names the IdP behind it, which
 * openid-client would refuse, before it looks at `token_type`).
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
      if (json && req.method === "POST" && answer.status === 200 && /\/token$/.test(req.url ?? "")) {
        const tokens = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
        for (const key of ["access_token", "refresh_token", "id_token"]) {
          if (typeof tokens[key] === "string") secrets.push(tokens[key]);
        }
        delete tokens.id_token;
        faults.tokenResponse?.(tokens);
        body = Buffer.from(JSON.stringify(tokens));
      }
      if (
        json &&
        req.method === "POST" &&
        answer.status === 200 &&
        faults.deviceAuthorizationResponse &&
        /\/device\/auth$/.test(req.url ?? "")
      ) {
        const authorization = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
        faults.deviceAuthorizationResponse(authorization);
        body = Buffer.from(JSON.stringify(authorization));
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

const rejection = rejectionInto();

/** A device login the test IdP approves as soon as the user code is shown. */
async function deviceLogin(options: Partial<DeviceCodeLoginOptions> = {}, onUserCode?: (info: DeviceCodeInfo) => void) {
  let approval: Promise<void> | undefined;
  try {
    return await loginWithDeviceCode({
      ...base(),
      onUserCode: (info) => {
        onUserCode?.(info);
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

/** Send `request` as raw bytes to the loopback listener; the status code of the answer (0: none). */
function rawRequest(port: number, request: string | Buffer): Promise<number> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let answer = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      answer += chunk;
    });
    socket.on("error", () => {});
    socket.on("close", () => resolve(Number(/^HTTP\/1\.[01] (\d{3}) /.exec(answer)?.[1] ?? 0)));
    socket.write(request);
    setTimeout(() => socket.end(), 200);
  });
}

describe("loginWithBrowser: the loopback listener", () => {
  it("answers anything but the real redirect with a 4xx and keeps waiting for it; the login then succeeds", async () => {
    idp.resetStats();
    const browser = createHeadlessBrowser();
    let walk: Promise<HeadlessPage> | undefined;
    const answers: [string, number][] = [];
    const result = await loginWithBrowser({
      ...base(),
      openBrowser: async (url) => {
        const port = Number(new URL(url.searchParams.get("redirect_uri") ?? "").port);
        // Someone who knows the state (it is in the browser's command line) but sends nonsense with it.
        const state = url.searchParams.get("state") ?? "";
        const hostile: [string, string | Buffer][] = [
          ["target //[", "GET //[ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"],
          ["target //callback", `GET //callback?state=${state}&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["absolute target", `GET http://evil.example/callback?state=${state}&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["asterisk target", "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"],
          ["garbage request line", "GARBAGE\r\n\r\n"],
          ["100 KB target", `GET /callback?state=${state}&code=${"x".repeat(100_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["8 KB target", `GET /callback?code=x&pad=${"x".repeat(8_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["bad percent-encoding", `GET /callback?state=${state}%ZZ&code=%E0%A4%A HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["POST", `POST /callback?state=${state}&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\na=b`],
          ["HEAD", `HEAD /callback?state=${state}&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["CONNECT", "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n"],
          [
            "websocket upgrade",
            `GET /callback?state=${state}&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
          ],
          ["missing state", "GET /callback?code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"],
          ["state twice", `GET /callback?state=${state}&state=other&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["code twice", `GET /callback?state=${state}&code=a&code=b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["error twice", `GET /callback?state=${state}&error=access_denied&error=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["neither code nor error", `GET /callback?state=${state} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["code and error", `GET /callback?state=${state}&code=x&error=access_denied HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["other path", `GET /callback/?state=${state}&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
          ["NUL in the target", Buffer.from(`GET /callback?state=${state}\0&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, "latin1")],
        ];
        for (const [what, request] of hostile) answers.push([what, await rawRequest(port, request)]);
        walk = browser.open(url);
      },
    });
    const page = await walk;
    for (const [what, status] of answers) assert.ok(status >= 400 && status < 500, `${what}: answered ${status || "nothing"}`);
    assert.equal(page?.status, 200);
    assert.equal(typeof result.access_token, "string");
    assert.equal(idp.stats.byGrantType.authorization_code, 1, "nothing but the real code reached the token endpoint");
  });

  const invalidCode = /^The identity provider returned an invalid error code$/;
  // What is outside RFC 6749's error characters appears nowhere; "<script>…" is inside them
  // (the token-free cause keeps it as the OAuth error), so only the message must not repeat it.
  for (const [what, error, expected] of [
    ["markup", "<script>alert(1)</script>", invalidCode],
    ["a space", "access denied", invalidCode],
    ["a quote and a line break", 'x"\nINFO forged log line', invalidCode],
    ["200 characters", "x".repeat(200), invalidCode],
    // A refusal of the client's settings: fix the configuration (a ProviderConfigurationError), not the login.
    [
      "a valid code",
      "invalid_scope",
      /^loginWithBrowser: the identity provider refused the scope "openid offline_access" \(invalid_scope\): check `scope`$/,
    ],
  ] as const) {
    it(`an error redirect whose error holds ${what}: the LoginError names it only if valid, and repeats no other parameter`, async () => {
      const browser = createHeadlessBrowser();
      let walk: Promise<HeadlessPage> | undefined;
      const description = "<img src=x onerror=alert(2)> call +1-555-0100";
      const err = await rejection(
        loginWithBrowser({
          ...base(),
          openBrowser: (url) => {
            const redirect = new URL(url.searchParams.get("redirect_uri") ?? "");
            redirect.search = new URLSearchParams({
              error,
              error_description: description,
              error_uri: "https://evil.example/help",
              state: url.searchParams.get("state") ?? "",
              iss: idp.issuer,
            }).toString();
            walk = browser.open(redirect);
          },
        }),
      );
      assert.ok(err instanceof (error === "invalid_scope" ? ProviderConfigurationError : LoginError), String(err));
      assert.match(err.message, expected);
      const printed = inspect(err, { depth: Number.POSITIVE_INFINITY, showHidden: true });
      assert.ok(error === "invalid_scope" || !err.message.includes(error), "the message repeats the error");
      const rfcValid = /^[\x21\x23-\x5B\x5D-\x7E]{1,64}$/.test(error);
      for (const raw of [description, "evil.example", ...(rfcValid ? [] : [error])]) {
        assert.ok(!printed.includes(raw), `the error repeats ${raw}`);
        assert.ok(!JSON.stringify(err.cause, Object.getOwnPropertyNames(err.cause)).includes(raw), `the cause repeats ${raw}`);
      }
      assert.equal((await walk)?.status, 400);
    });
  }
});

/** Run `scenario` and collect the process warnings it causes (setTimeout reports an overflow as one). */
async function warningsDuring<T>(scenario: () => Promise<T>): Promise<{ result: T; warnings: Error[] }> {
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on("warning", onWarning);
  try {
    const result = await scenario();
    await new Promise((resolve) => setImmediate(resolve)); // warnings arrive on the next tick
    return { result, warnings };
  } finally {
    process.off("warning", onWarning);
  }
}

describe("login timers", () => {
  const thirtyDays = 30 * 24 * 3600;
  for (const [what, fault, expected] of [
    ["30 days", (body: Record<string, unknown>) => (body.expires_in = thirtyDays), thirtyDays],
    ["missing", (body: Record<string, unknown>) => delete body.expires_in, 600],
    ["negative", (body: Record<string, unknown>) => (body.expires_in = -5), 600],
    ["zero", (body: Record<string, unknown>) => (body.expires_in = 0), 600],
    ["not a number", (body: Record<string, unknown>) => (body.expires_in = "soon"), 600],
  ] as const) {
    it(`loginWithDeviceCode: a device code whose expires_in is ${what} does not end the login at once, and nothing is printed`, async () => {
      proxy.faults.deviceAuthorizationResponse = fault;
      try {
        let expiresIn: number | undefined;
        const { result, warnings } = await warningsDuring(() =>
          deviceLogin({ issuer: proxy.issuer }, (info) => {
            expiresIn = info.expiresIn;
          }),
        );
        assert.equal(typeof result.access_token, "string");
        assert.equal(expiresIn, expected);
        assert.deepEqual(
          warnings.map((w) => w.name),
          [],
        );
      } finally {
        delete proxy.faults.deviceAuthorizationResponse;
      }
    });
  }

  it("loginWithBrowser: a timeoutMs of 1e12 ms does not end the login at once, and nothing is printed", async () => {
    const { result, warnings } = await warningsDuring(() => browserLogin({ timeoutMs: 1e12 }));
    assert.equal(typeof result.access_token, "string");
    assert.deepEqual(
      warnings.map((w) => w.name),
      [],
    );
  });
});

/**
 * Issue 16 A3: a token is visible ASCII (0x21–0x7E), or it is refused at the door — by
 * `setTokens`, in a refresh answer, in a login answer and on read from a store — with a
 * typed error that quotes no token (nor does any cause). And no header the interceptor sets
 * can fail with an error that quotes its value: such a token is refused before it is sent,
 * and the call goes on with a fresh one. Real IdP, real connect-node servers, every transport.
 *
 * Reproduce: node --import tsx --test test/integration/token-values.test.ts
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import {
  ConfigurationError,
  createAuthInterceptor,
  createTokenManager,
  LoginError,
  loginWithDeviceCode,
  type TokenEvent,
  type TokenProvider,
  TokenRefreshError,
  TokenStoreError,
} from "../../src/index.js";
import { fileStore, loginWithBrowser } from "../../src/node.js";
import { isTokenString, parseStoredTokens } from "../../src/stored-tokens.js";
import { createHeadlessBrowser, type HeadlessPage } from "../support/headless-browser.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock } from "../support/manual-clock.js";
import { startServer, type TestServer } from "../support/server.js";
import { KINDS, transportFor } from "../support/transports.js";

const HOUR = 3600_000;
const leaks = createLeakScanner();

/** Characters no token may hold, each inside an otherwise ordinary token (long enough for the leak scan). */
const BAD: readonly (readonly [string, string])[] = [
  ["CR LF (a header injection)", "\r\nX-Injected: 1"],
  ["LF", "\n"],
  ["CR", "\r"],
  ["NUL", "\0"],
  ["a tab", "\t"],
  ["a space", " "],
  ["DEL", "\x7f"],
  ["a non-ASCII letter", "é"],
  ["a line separator", "\u2028"],
];
const badToken = (inside: string) => {
  const token = `tok-${randomBytes(12).toString("hex")}${inside}${randomBytes(12).toString("hex")}`;
  leaks.remember(token, ...token.split(/[^\x21-\x7e]+/));
  return token;
};

/** The error `promise` rejects with, scanned for token material. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => assert.fail("expected a rejection"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof Error, String(error));
  leaks.assertClean(error, "error");
  return error;
}

let idp: Idp;
let h1: TestServer;
let h2: TestServer;
let folder: string;
before(async () => {
  [idp, folder] = await Promise.all([startIdp({ accessTokenTtl: 3600 }), mkdtemp(join(tmpdir(), "connect-oidc-token-values-"))]);
  [h1, h2] = await Promise.all([startServer({ idp, http2: false }), startServer({ idp, http2: true })]);
});
after(async () => {
  await h1?.close();
  await h2?.close();
  await idp?.close();
  await rm(folder, { recursive: true, force: true });
});

describe("what a token is", () => {
  it("visible ASCII, one character or more: what RFC 6750's b64token allows, and the other visible characters providers use", () => {
    for (const good of [
      "a",
      "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
      "EAAB|app-secret",
      "a%2Fb!c~d+e/f==",
      "!\"#$%&'()*,:;<>?@[\\]^`{}",
    ]) {
      assert.ok(isTokenString(good), good);
    }
    for (const [name, inside] of BAD) assert.ok(!isTokenString(`a${inside}b`), name);
    assert.ok(!isTokenString(""));
    assert.ok(!isTokenString(42));
  });
});

describe("setTokens refuses a token that is no header value", () => {
  for (const field of ["access_token", "refresh_token"] as const) {
    it(`in ${field}: ConfigurationError naming the field, no token in it; nothing stored`, async () => {
      const manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
      try {
        for (const [name, inside] of BAD) {
          const response = { access_token: badToken(""), refresh_token: badToken(""), expires_in: 3600, [field]: badToken(inside) };
          const error = await rejection(manager.setTokens(response));
          assert.ok(error instanceof ConfigurationError, `${name}: ${error.name}`);
          assert.match(error.message, new RegExp(`its ${field} holds characters no token may have`), name);
        }
        const error = await rejection(manager.getAccessToken());
        assert.ok(!(error instanceof ConfigurationError), "no login was taken");
      } finally {
        manager.close();
      }
    });
  }

  it("any visible ASCII token is taken and handed out as it is", async () => {
    const manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    try {
      const token = "EAAB|opaque%21token!with~other=visible;chars";
      await manager.setTokens({ access_token: token, expires_in: 3600 });
      assert.equal(await manager.getAccessToken(), token);
    } finally {
      manager.close();
    }
  });
});

describe("a refresh answer with such a token", () => {
  it("is refused (typed, token-free), its new refresh token kept; the next refresh works without presenting a used one", async () => {
    const clock = createManualClock();
    const events: TokenEvent[] = [];
    const manager = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      clock,
      onEvent: (e) => events.push(e),
    });
    const invalidGrants = idp.stats.invalidGrant;
    try {
      const login = await idp.login();
      leaks.remember(login.access_token, login.refresh_token);
      await manager.setTokens(login);
      const bad = badToken("\r\nX-Injected: 1");
      idp.rewriteTokenResponse((body) => {
        leaks.remember(body.access_token as string, body.refresh_token as string);
        return { ...body, access_token: bad };
      });
      await clock.advance(HOUR + 60_000); // expired: the call must refresh
      const error = await rejection(manager.getAccessToken());
      assert.ok(error instanceof TokenRefreshError, `${error.name}: ${error.message}`);
      const failed = events.find((e) => e.type === "refresh-failed");
      assert.ok(failed?.type === "refresh-failed", "a refresh-failed event");
      assert.match(failed.error.message, /access_token holds characters no token may have/);
      assert.match(failed.error.message, /the new refresh token was kept/);
      idp.rewriteTokenResponse(undefined);
      await clock.advance(60_000);
      const fresh = await manager.getAccessToken();
      leaks.remember(fresh);
      assert.ok(isTokenString(fresh) && fresh !== bad);
      assert.equal(idp.stats.invalidGrant, invalidGrants, "no refresh token presented twice");
      for (const e of events) leaks.assertClean(e, `event ${e.type}`);
    } finally {
      idp.rewriteTokenResponse(undefined);
      manager.close();
    }
  });
});

describe("a login answer with such a token", () => {
  it("loginWithDeviceCode ends with a LoginError that names the problem and quotes no token", async () => {
    const bad = badToken("\n");
    idp.rewriteTokenResponse((body) => {
      leaks.remember(body.access_token as string, body.refresh_token as string, body.id_token as string);
      return { ...body, access_token: bad };
    });
    let approval: Promise<void> | undefined;
    try {
      const error = await rejection(
        loginWithDeviceCode({
          issuer: idp.issuer,
          clientId: idp.clientId,
          allowInsecureRequests: true,
          onUserCode: (info) => {
            approval = idp.approveDeviceCode(info.userCode);
          },
        }),
      );
      assert.ok(error instanceof LoginError, `${error.name}: ${error.message}`);
      assert.match(error.message, /access_token holds characters no token may have/);
    } finally {
      await approval;
      idp.rewriteTokenResponse(undefined);
    }
  });
});

describe("a browser login answer with such a token", () => {
  it("loginWithBrowser ends with a LoginError that names the problem and quotes no token", async () => {
    const bad = badToken("\0");
    idp.rewriteTokenResponse((body) => {
      leaks.remember(body.access_token as string, body.refresh_token as string, body.id_token as string);
      return { ...body, refresh_token: bad };
    });
    const browser = createHeadlessBrowser();
    let walk: Promise<HeadlessPage> | undefined;
    try {
      const error = await rejection(
        loginWithBrowser({
          issuer: idp.issuer,
          clientId: idp.clientId,
          allowInsecureRequests: true,
          openBrowser: (url) => {
            walk = browser.open(url);
          },
        }),
      );
      assert.ok(error instanceof LoginError, `${error.name}: ${error.message}`);
      assert.match(error.message, /refresh_token holds characters no token may have/);
    } finally {
      await walk?.catch(() => undefined);
      idp.rewriteTokenResponse(undefined);
    }
  });
});

describe("a store holding such a token", () => {
  const stored = (field: "accessToken" | "refreshToken", value: string) => ({
    version: 1,
    issuer: idp.issuer,
    clientId: idp.clientId,
    accessToken: badToken(""),
    refreshToken: badToken(""),
    issuedAt: Date.now(),
    expiresAt: Date.now() + HOUR,
    [field]: value,
  });

  for (const field of ["accessToken", "refreshToken"] as const) {
    it(`in ${field}: TokenStoreError "corrupt" naming the field, quoting nothing`, () => {
      for (const [name, inside] of BAD) {
        let error: unknown;
        try {
          parseStoredTokens(JSON.stringify(stored(field, badToken(inside))), "The test value");
        } catch (e) {
          error = e;
        }
        assert.ok(error instanceof TokenStoreError && error.reason === "corrupt", `${name}: ${String(error)}`);
        assert.match(error.message, new RegExp(`field "${field}" holds characters no token may have`));
        leaks.assertClean(error, "error");
      }
    });
  }

  it("a manager on such a token file fails with that error (never 'no login', never the token)", async () => {
    const path = join(folder, "tokens.json");
    await writeFile(path, JSON.stringify(stored("accessToken", badToken("\r\nX-Injected: 1"))), { mode: 0o600 });
    const manager = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store: fileStore(path) });
    try {
      const error = await rejection(manager.getAccessToken());
      assert.ok(error instanceof TokenStoreError && error.reason === "corrupt", `${error.name}: ${error.message}`);
    } finally {
      manager.close();
    }
  });
});

describe("the interceptor never sets a header it cannot (a custom provider's token)", () => {
  for (const kind of KINDS) {
    it(`${kind}: the bad token is never sent, no error quotes it; the call goes on with a fresh token`, async () => {
      const login = await idp.login();
      leaks.remember(login.access_token, login.refresh_token);
      const bad = badToken("\r\nX-Injected: 1");
      const rejected: string[] = [];
      const provider: TokenProvider = {
        async getAccessToken(request) {
          if (request?.rejected === undefined) return bad;
          rejected.push(request.rejected);
          return login.access_token;
        },
      };
      const client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(provider)]));
      const marker = `values-${kind}`;
      const res = await client.say({ text: marker });
      assert.equal(res.text, marker);
      assert.equal(rejected.length, 1, "the provider was told its token is unusable");
      assert.ok(rejected[0] === bad);
    });

    it(`${kind}: a provider that only has such a token: Unauthenticated, token-free, nothing sent`, async () => {
      const bad = badToken("\0");
      const provider: TokenProvider = { getAccessToken: async () => bad };
      const server = kind === "connect-h2" || kind === "grpc" ? h2 : h1;
      server.resetStats();
      const client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(provider)]));
      const error = await rejection(client.say({ text: "never sent" }));
      assert.ok(error instanceof ConnectError && error.code === Code.Unauthenticated, `${error.name}: ${error.message}`);
      assert.match(error.message, /the request was not sent/);
      assert.equal(server.stats.requests.length, 0, "nothing reached the server");
    });
  }
});

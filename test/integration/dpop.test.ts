/**
 * DPoP end to end with connect-oidc's own code: both logins make a key and get DPoP-bound
 * tokens from a real oidc-provider that demands its nonce; the token manager keeps the key
 * with the login and refreshes with proofs; the interceptor sends `authorization: DPoP` and a
 * fresh proof to real DPoP-verifying connect-node servers (nonces required) on every
 * transport, answers `use_dpop_nonce` and revocations with one retry each (never two), and
 * keeps up with rotating nonces. A login without its key is a typed error, never a bearer
 * call. Nothing leaks: tokens and the private JWK are scanned for in every event and error.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { Code, ConnectError, type Client, createClient } from "@connectrpc/connect";
import { calculateJwkThumbprint, decodeJwt } from "jose";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import {
  ConfigurationError,
  createAuthInterceptor,
  createTokenManager,
  DPoPKeyError,
  LoginError,
  loginWithDeviceCode,
  memoryStore,
  type StoredTokens,
  type TokenEndpointResponse,
  type TokenEvent,
  type TokenManager,
  TokenStoreError,
} from "../../src/index.js";
import { fileStore, loginWithBrowser } from "../../src/node.js";
import { createHeadlessBrowser } from "../support/headless-browser.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { hashToken, type RecordedRequest, startServer, type TestServer } from "../support/server.js";
import { hasBidi, KINDS, serverFor, transportFor, webOnly } from "../support/transports.js";
import { attemptBudget, bounded } from "../support/dpop-attempt-budget.js";

describe("DPoP with connect-oidc (real IdP with nonces, real DPoP servers)", () => {
  let idp: Idp;
  let h1: TestServer;
  let h2: TestServer;
  let dir: string;
  const leaks = createLeakScanner();
  const seen: unknown[] = [];
  const events: TokenEvent[] = [];
  // Every call: at most one retry, else it fails at once naming the bound (never a spin).
  const budget = attemptBudget();

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600, dpop: { requireNonce: true } });
    h1 = await startServer({ idp, http2: false, dpop: { requireNonce: true } });
    h2 = await startServer({ idp, http2: true, dpop: { requireNonce: true } });
    dir = await mkdtemp(join(tmpdir(), "connect-oidc-dpop-"));
  });
  after(async () => {
    // Servers closed whatever the checks say: an open listener would keep the run from ending.
    try {
      assert.equal(budget.overruns, 0, "calls retried more than once");
      assert.ok(leaks.count > 0);
      for (const e of events) leaks.assertClean(e, `event ${e.type}`);
      for (const value of seen) leaks.assertClean(value, "error or server record");
    } finally {
      await h1.close();
      await h2.close();
      await idp.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  const base = () => ({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });

  /** Remember what must never show up: the tokens and the private key's JWK members. */
  const remember = async (login: TokenEndpointResponse) => {
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    const privateKey = login.dpopKey?.keyPair.privateKey;
    if (privateKey?.extractable) {
      const jwk = await crypto.subtle.exportKey("jwk", privateKey);
      leaks.remember(jwk.d);
    }
  };

  const browserLogin = async (options: { dpop?: true } = { dpop: true }) => {
    const browser = createHeadlessBrowser();
    let walk: Promise<unknown> | undefined;
    let opened: URL | undefined;
    const login = await loginWithBrowser({
      ...base(),
      scope: "openid offline_access api",
      ...options,
      openBrowser: (url) => {
        opened = url;
        walk = browser.open(url);
      },
    });
    await walk;
    await remember(login);
    return { login, opened: opened! };
  };

  const thumbprintOf = async (login: TokenEndpointResponse) =>
    calculateJwkThumbprint((await crypto.subtle.exportKey("jwk", login.dpopKey!.keyPair.publicKey)) as never);
  const cnfOf = (accessToken: string) => (decodeJwt(accessToken).cnf as { jkt?: string } | undefined)?.jkt;

  const manager = (extra: Partial<Parameters<typeof createTokenManager>[0]> = {}) =>
    createTokenManager({ ...base(), dpop: true, onEvent: (e) => events.push(e), ...extra });

  /** A DPoP login set by a manager on a fresh file store (then closed): another process's view of it. */
  const loginInFile = async () => {
    const path = join(dir, `${randomUUID()}.json`);
    const first = manager({ store: fileStore(path) });
    const { login } = await browserLogin();
    await first.setTokens(login);
    first.close();
    return { path, login };
  };

  const fails = async (p: Promise<unknown>): Promise<unknown> => {
    try {
      await p;
    } catch (error) {
      seen.push(error);
      return error;
    }
    assert.fail("expected a failure");
  };

  describe("logins", () => {
    it("loginWithBrowser binds the code (dpop_jkt) and the tokens to a new key", bounded, async () => {
      idp.resetStats();
      const { login, opened } = await browserLogin();
      const jkt = await thumbprintOf(login);
      assert.equal(login.token_type?.toLowerCase(), "dpop");
      assert.equal(login.dpopKey?.algorithm, "ES256");
      assert.equal(opened.searchParams.get("dpop_jkt"), jkt);
      assert.equal(cnfOf(login.access_token), jkt);
      assert.equal(idp.stats.errors.use_dpop_nonce, 1, "the IdP's nonce demand was answered once");
    });

    it("loginWithDeviceCode binds the tokens to a new key (ES384 when asked)", bounded, async () => {
      let approval: Promise<void> | undefined;
      const login = await loginWithDeviceCode({
        ...base(),
        scope: "openid offline_access api",
        dpop: { algorithm: "ES384" },
        onUserCode: (info) => {
          approval = idp.approveDeviceCode(info.userCode);
        },
      });
      await approval;
      await remember(login);
      assert.equal(login.token_type?.toLowerCase(), "dpop");
      assert.equal(login.dpopKey?.algorithm, "ES384");
      assert.equal(cnfOf(login.access_token), await thumbprintOf(login));
      const tokens = manager({ dpop: { algorithm: "ES384" } });
      await tokens.setTokens(login);
      assert.equal(await tokens.getAccessToken(), login.access_token);
      tokens.close();
    });

    it("a bad dpop option is a ConfigurationError at once", bounded, async () => {
      await assert.rejects(
        loginWithDeviceCode({ ...base(), dpop: { algorithm: "HS256" as never }, onUserCode: () => {} }),
        ConfigurationError,
      );
      assert.throws(() => createTokenManager({ ...base(), dpop: "yes" as never }), ConfigurationError);
    });
  });

  for (const kind of KINDS) {
    describe(kind, () => {
      let server: TestServer;
      let tokens: TokenManager;
      let client: Client<typeof EchoService>;
      let login: TokenEndpointResponse;
      let jkt: string;

      beforeEach(async () => {
        server = serverFor(kind, h1, h2);
        tokens?.close();
        tokens = manager();
        ({ login } = await browserLogin());
        jkt = await thumbprintOf(login);
        await tokens.setTokens(login);
        client = createClient(EchoService, transportFor(kind, h1, h2, [createAuthInterceptor(tokens), budget.interceptor]));
        // A nonce unknown to the client: its first call meets use_dpop_nonce.
        server.dpop.rotateNonce();
        server.dpop.rotateNonce();
        server.resetStats();
        idp.resetStats();
      });

      const requests = async (): Promise<RecordedRequest[]> => {
        const all = [...server.stats.requests];
        await Promise.all(all.map((r) => r.done));
        seen.push(...all.map((r) => ({ ...r, body: undefined })));
        return all;
      };

      it("unary: use_dpop_nonce, then the call re-sent once with the nonce; later calls carry it at once", bounded, async () => {
        const res = await client.say({ text: randomUUID() });
        assert.equal(res.subject, idp.accountId);
        const first = await requests();
        assert.deepEqual(
          first.map((r) => [r.auth, r.dpop?.reason ?? "ok"]),
          [
            ["rejected", "nonce-missing"],
            ["accepted", "ok"],
          ],
        );
        assert.equal(first[1]?.dpop?.jkt, jkt);
        assert.equal(first[1]?.tokenHash, hashToken(login.access_token));
        server.resetStats();
        await client.say({ text: "again" });
        assert.deepEqual(
          (await requests()).map((r) => r.auth),
          ["accepted"],
        );
        assert.equal(idp.stats.byGrantType.refresh_token, 0, "no refresh for a nonce");
      });

      it("server-streaming: use_dpop_nonce before the first message, re-sent once", bounded, async () => {
        const got: number[] = [];
        for await (const m of client.countdown({ count: 3 })) got.push(m.count);
        assert.deepEqual(got, [3, 2, 1]);
        assert.deepEqual(
          (await requests()).map((r) => r.auth),
          ["rejected", "accepted"],
        );
        assert.equal(idp.stats.byGrantType.refresh_token, 0);
      });

      /** A unary call whose token the server revoked: refused, then accepted with a fresh token. */
      const revokedThenAccepted = async () => {
        const res = await client.say({ text: randomUUID() });
        assert.equal(res.subject, idp.accountId);
        assert.deepEqual(
          (await requests()).map((r) => [r.auth, r.reason]),
          [
            ["rejected", "revoked"],
            ["accepted", undefined],
          ],
        );
      };

      it("a revoked token: one refresh (with a proof), the call re-sent once; unary and server-streaming", bounded, async () => {
        await client.say({ text: "learn the nonce" });
        server.revoke(login.access_token);
        server.resetStats();
        await revokedThenAccepted();
        // One refresh; the IdP may first ask for its nonce (openid-client re-sends once with it).
        const refreshed = () => idp.stats.byGrantType.refresh_token - (idp.stats.errors.use_dpop_nonce ?? 0);
        assert.equal(refreshed(), 1);
        const fresh = await tokens.getAccessToken();
        leaks.remember(fresh);
        assert.equal(cnfOf(fresh), jkt, "the refreshed token is bound to the same key");

        server.revoke(fresh);
        server.resetStats();
        const got: number[] = [];
        for await (const m of client.countdown({ count: 2 })) got.push(m.count);
        assert.deepEqual(got, [2, 1]);
        assert.deepEqual(
          (await requests()).map((r) => r.auth),
          ["rejected", "accepted"],
        );
        assert.equal(refreshed(), 2);
        leaks.remember(await tokens.getAccessToken());
      });

      it("a stale nonce and a revoked token in one call: one retry covers both (the refusal carries the nonce)", bounded, async () => {
        server.revoke(login.access_token);
        await revokedThenAccepted();
        leaks.remember(await tokens.getAccessToken());
      });

      /** A server that starts refusing every token sees `call` twice (re-sent once), never more. */
      const refusedTwice = async (call: () => Promise<unknown>) => {
        await client.say({ text: "accepted first" }); // a token the server took: replaced at once when refused
        server.resetStats();
        server.setRejectAll(true);
        try {
          const error = await fails(call());
          assert.equal(ConnectError.from(error).code, Code.Unauthenticated, String(error));
          assert.deepEqual(
            (await requests()).map((r) => r.reason),
            ["reject-all", "reject-all"],
          );
        } finally {
          server.setRejectAll(false);
        }
        leaks.remember(await tokens.getAccessToken());
      };

      it("never two retries (unary)", bounded, () => refusedTwice(() => client.say({ text: randomUUID() })));

      it("never two retries (server-streaming)", bounded, () =>
        refusedTwice(async () => {
          for await (const _ of client.countdown({ count: 2 }));
        }),
      );

      it("nonces rotating mid-session: no call fails", bounded, async () => {
        let failed = 0;
        for (let i = 0; i < 12; i += 1) {
          if (i % 3 === 0) server.dpop.rotateNonce();
          if (i % 6 === 0) server.dpop.rotateNonce();
          await client.say({ text: `r${i}` }).catch((e: unknown) => {
            seen.push(e);
            failed += 1;
          });
          const got: number[] = [];
          for await (const m of client.countdown({ count: 2 })) got.push(m.count);
          assert.deepEqual(got, [2, 1]);
        }
        assert.equal(failed, 0);
        const all = await requests();
        assert.ok(all.every((r) => r.auth === "accepted" || r.dpop?.reason === "nonce-missing" || r.dpop?.reason === "nonce-stale"));
        assert.equal(idp.stats.byGrantType.refresh_token, 0);
      });

      if (!webOnly(kind)) {
        it("client-streaming (and bidi): never re-sent; the nonce learned from the refusal serves the next call", bounded, async () => {
          const first = await fails(
            client.collect(
              (async function* () {
                yield { text: "a" };
              })(),
            ),
          );
          assert.equal(ConnectError.from(first).code, Code.Unauthenticated);
          const res = await client.collect(
            (async function* () {
              yield { text: "a" };
              yield { text: "b" };
            })(),
          );
          assert.ok(res);
          if (hasBidi(kind)) {
            const out: string[] = [];
            for await (const m of client.chat(
              (async function* () {
                yield { text: "x" };
              })(),
            ))
              out.push(m.text);
            assert.equal(out.length, 1);
          }
          assert.equal(idp.stats.byGrantType.refresh_token, 0);
        });
      }
    });
  }

  describe("the key with the login, and never a bearer fallback", () => {
    it("memoryStore keeps a CryptoKeyPair whose private key cannot be exported", bounded, async () => {
      const store = memoryStore();
      const tokens = manager({ store });
      const { login } = await browserLogin();
      await tokens.setTokens(login);
      const stored = await store.load();
      assert.ok(stored?.dpopKey !== undefined && "keyPair" in stored.dpopKey);
      assert.equal(stored.dpopKey.keyPair.privateKey.extractable, false);
      assert.equal(stored.tokenType, "DPoP");
      tokens.close();
    });

    it("fileStore keeps the key as JWKs: a second manager (another process's view) signs with the same key", bounded, async () => {
      const path = join(dir, `${randomUUID()}.json`);
      const a = manager({ store: fileStore(path) });
      const { login } = await browserLogin();
      await a.setTokens(login);
      const text = await readFile(path, "utf8");
      const stored = JSON.parse(text) as StoredTokens;
      assert.ok(stored.dpopKey !== undefined && "privateJwk" in stored.dpopKey);
      assert.equal(stored.tokenType, "DPoP");
      a.close();
      const b = manager({ store: fileStore(path) });
      h1.resetStats();
      const client = createClient(EchoService, transportFor("connect-h1", h1, h2, [createAuthInterceptor(b), budget.interceptor]));
      await client.say({ text: "from b" });
      const last = h1.stats.requests.at(-1);
      assert.equal(last?.auth, "accepted");
      assert.equal(last?.dpop?.jkt, await thumbprintOf(login));
      b.close();
    });

    it("a stored DPoP login whose key is gone: DPoPKeyError missing, no request sent", bounded, async () => {
      const { path } = await loginInFile();
      const { dpopKey: _gone, ...withoutKey } = JSON.parse(await readFile(path, "utf8")) as StoredTokens;
      await writeFile(path, JSON.stringify(withoutKey));
      const b = manager({ store: fileStore(path) });
      const error = await fails(b.getAccessToken());
      assert.ok(error instanceof DPoPKeyError);
      assert.equal(error.reason, "missing");
      h1.resetStats();
      const client = createClient(EchoService, transportFor("connect-h1", h1, h2, [createAuthInterceptor(b), budget.interceptor]));
      const callError = await fails(client.say({ text: "x" }));
      assert.equal(ConnectError.from(callError).code, Code.Unauthenticated);
      assert.ok(ConnectError.from(callError).cause instanceof DPoPKeyError);
      assert.equal(h1.stats.requests.length, 0, "nothing sent, least of all as a bearer token");
      // A manager without dpop refuses it too.
      const plain = createTokenManager({ ...base(), store: fileStore(path) });
      const unexpected = await fails(plain.getAccessToken());
      assert.ok(unexpected instanceof DPoPKeyError);
      assert.equal(unexpected.reason, "unexpected");
      b.close();
      plain.close();
    });

    it("a corrupt stored key: TokenStoreError corrupt, never quoting it", bounded, async () => {
      const { path } = await loginInFile();
      const stored = JSON.parse(await readFile(path, "utf8")) as { dpopKey: { privateJwk: { d: string } } };
      const d = stored.dpopKey.privateJwk.d;
      leaks.remember(d);
      stored.dpopKey.privateJwk.d = `${d.slice(0, -4)}!!!!`;
      await writeFile(path, JSON.stringify(stored));
      const error = await fails(manager({ store: fileStore(path) }).getAccessToken());
      assert.ok(error instanceof TokenStoreError);
      assert.equal(error.reason, "corrupt");
    });

    it("a key that does not match its public part: DPoPKeyError unusable", bounded, async () => {
      const { path } = await loginInFile();
      const other = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"])) as CryptoKeyPair;
      const otherD = (await crypto.subtle.exportKey("jwk", other.privateKey)).d!;
      leaks.remember(otherD);
      const stored = JSON.parse(await readFile(path, "utf8")) as { dpopKey: { privateJwk: { d: string } } };
      stored.dpopKey.privateJwk.d = otherD;
      await writeFile(path, JSON.stringify(stored));
      const bEvents: TokenEvent[] = [];
      const b = manager({ store: fileStore(path), onEvent: (e) => bEvents.push(e) });
      const client = createClient(EchoService, transportFor("connect-h1", h1, h2, [createAuthInterceptor(b), budget.interceptor]));
      h1.resetStats();
      const refreshes = idp.stats.byGrantType.refresh_token;
      const error = await fails(client.say({ text: "x" }));
      assert.ok(ConnectError.from(error).cause instanceof DPoPKeyError);
      assert.equal((ConnectError.from(error).cause as DPoPKeyError).reason, "unusable");
      assert.equal(h1.stats.requests.length, 0, "nothing sent");
      assert.equal(idp.stats.byGrantType.refresh_token, refreshes, "a proof that cannot be made is no refusal: no refresh");
      assert.deepEqual(bEvents, [], "no refresh was even tried");
      events.push(...bEvents);
      b.close();
    });

    it("a dpop manager given a bearer login, or a plain manager given a DPoP login: ConfigurationError", bounded, async () => {
      const bearer = await idp.login({ scope: "openid offline_access api" });
      leaks.remember(bearer.access_token, bearer.refresh_token);
      await assert.rejects(manager().setTokens(bearer), ConfigurationError);
      const { login } = await browserLogin();
      await assert.rejects(createTokenManager(base()).setTokens(login), ConfigurationError);
      await assert.rejects(manager().setTokens({ ...login, dpopKey: undefined }), ConfigurationError);
    });

    it("a dpop manager over a store holding a bearer login: DPoPKeyError not-bound", bounded, async () => {
      const path = join(dir, `${randomUUID()}.json`);
      const plain = createTokenManager({ ...base(), store: fileStore(path) });
      const bearer = await idp.login({ scope: "openid offline_access api" });
      leaks.remember(bearer.access_token, bearer.refresh_token);
      await plain.setTokens(bearer);
      plain.close();
      const error = await fails(manager({ store: fileStore(path) }).getAccessToken());
      assert.ok(error instanceof DPoPKeyError);
      assert.equal(error.reason, "not-bound");
    });

    it("bearer tokens for a DPoP request: the login is a LoginError, a refresh fails and keeps the old token", bounded, async () => {
      idp.rewriteTokenResponse((body) => ({ ...body, token_type: "Bearer" }));
      try {
        const error = await fails(browserLogin());
        assert.ok(error instanceof LoginError, String(error));
      } finally {
        idp.rewriteTokenResponse(undefined);
      }
      const failures: TokenEvent[] = [];
      const watched = createTokenManager({ ...base(), dpop: true, store: memoryStore(), onEvent: (e) => failures.push(e) });
      await watched.setTokens((await browserLogin()).login);
      const held = await watched.getAccessToken();
      idp.rewriteTokenResponse((body) => ({ ...body, token_type: "Bearer" }));
      try {
        const error = await fails(watched.getAccessToken({ rejected: held }));
        assert.ok(error instanceof Error);
      } finally {
        idp.rewriteTokenResponse(undefined);
      }
      const failed = failures.find((e) => e.type === "refresh-failed");
      assert.ok(failed !== undefined && failed.type === "refresh-failed" && !failed.terminal);
      assert.match(failed.error.message, /bearer tokens/);
      events.push(...failures);
      watched.close();
    });

    it("client credentials with dpop: the manager makes the key; calls pass", bounded, async () => {
      const tokens = createTokenManager({
        ...base(),
        clientId: idp.serviceClient.clientId,
        clientSecret: idp.serviceClient.clientSecret,
        grant: "client_credentials",
        scope: "api",
        dpop: true,
        onEvent: (e) => events.push(e),
      });
      const client = createClient(EchoService, transportFor("connect-h2", h1, h2, [createAuthInterceptor(tokens), budget.interceptor]));
      const res = await client.say({ text: "service" });
      assert.ok(res);
      const token = await tokens.getAccessToken();
      leaks.remember(token);
      assert.ok(cnfOf(token));
      tokens.close();
    });
  });
});

/**
 * Every mistake a new user makes, and every outage, says which of three it is — by its class,
 * its code and a message that names the fix: log in again (ReauthRequiredError), fix the
 * configuration (the ConfigurationError family), or wait (TokenRefreshError, TokenStoreError
 * "unavailable"). On real parts: the test IdP (oidc-provider) behind a real counting proxy,
 * real closed ports, a real missing D-Bus session, a real stopped Redis. A configuration
 * failure is raised once and then failed fast (no further request reaches the IdP); the same
 * answer after the configuration has worked is retried with backoff.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import {
  ConfigurationError,
  createTokenManager,
  DPoPKeyError,
  loginWithDeviceCode,
  memoryStore,
  ProviderConfigurationError,
  ReauthRequiredError,
  type TokenEvent,
  type TokenManager,
  type TokenManagerOptions,
  TokenRefreshError,
  TokenStoreError,
} from "../../src/index.js";
import { keyringStore, loginWithBrowser } from "../../src/node.js";
import { redisStore } from "../../src/redis.js";
import { boundLogin } from "../support/dpop-bound-login.js";
import { type Idp, startIdp } from "../support/idp.js";
import { type IdpProxy, startIdpProxy } from "../support/idp-proxy.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock, type ManualClock } from "../support/manual-clock.js";
import { bundledWorker } from "../support/worker-bundle.js";

type Kind = "configuration" | "reauth" | "wait";

interface Row {
  readonly name: string;
  readonly kind: Kind;
  readonly errorClass: new (...args: never[]) => Error;
  readonly code: string;
  readonly reason?: string;
  /** The message names the fix. */
  readonly fix: RegExp;
  readonly todo?: string;
  /** The first failure, on a manager this row makes (kept for closing). */
  readonly run: () => Promise<Attempt>;
}

interface Attempt {
  readonly error: unknown;
  readonly manager?: TokenManager;
  readonly clock?: ManualClock;
  readonly seen: TokenEvent[];
}

const SECOND = 1000;
/** A login without `openid`: no ID token, whose `iss` (the IdP's own origin) the proxy does not rewrite. */
const LOGIN_SCOPE = "offline_access api";

describe("failure kinds: every failure says whether to log in again, fix the configuration, or wait", () => {
  let idp: Idp;
  let proxy: IdpProxy;
  let closedPort: number;
  const leaks = createLeakScanner();
  const managers: TokenManager[] = [];

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 3600, dpop: {} });
    proxy = await startIdpProxy(idp.issuer);
    closedPort = await aClosedPort();
    leaks.remember(idp.serviceClient.clientSecret, WRONG_SECRET);
  });
  after(async () => {
    for (const m of managers) m.close();
    await proxy?.close();
    await idp?.close();
  });

  const WRONG_SECRET = "wrong-secret-0123456789abcdef";

  /** A manager on a manual clock through the proxy, its events in `seen`. */
  const manager = (options: Partial<TokenManagerOptions>, seen: TokenEvent[], clock: ManualClock): TokenManager => {
    const m = createTokenManager({
      issuer: proxy.origin,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      clock,
      random: () => 0.5,
      onEvent: (e) => seen.push(e),
      ...options,
    } as TokenManagerOptions);
    managers.push(m);
    return m;
  };

  /** The first call's failure; with `login`, a fresh login is set first and its token refused (a refresh is due). */
  const attempt = async (options: Partial<TokenManagerOptions>, login = false): Promise<Attempt> => {
    const seen: TokenEvent[] = [];
    const clock = createManualClock();
    const m = manager(options, seen, clock);
    let rejected: string | undefined;
    if (login) {
      const tokens = await idp.login({ scope: LOGIN_SCOPE });
      leaks.remember(tokens.access_token, tokens.refresh_token);
      await m.setTokens(tokens);
      rejected = tokens.access_token;
    }
    const error = await m.getAccessToken(rejected === undefined ? {} : { rejected }).then(
      (token) => assert.fail(`a token came back (${token.length} chars)`),
      (e: unknown) => e,
    );
    return { error, manager: m, clock, seen };
  };

  const deviceLogin = () => ({
    issuer: proxy.origin,
    clientId: idp.clientId,
    allowInsecureRequests: true as const,
    onUserCode: () => assert.fail("no user code for a refused configuration"),
  });
  const loginFails = async (login: () => Promise<unknown>): Promise<Attempt> => ({
    error: await login().then(
      () => assert.fail("the login succeeded"),
      (e: unknown) => e,
    ),
    seen: [],
  });

  const service = (extra: Partial<TokenManagerOptions> = {}): Partial<TokenManagerOptions> => ({
    clientId: idp.serviceClient.clientId,
    clientSecret: idp.serviceClient.clientSecret,
    grant: "client_credentials",
    ...extra,
  });

  const rows: Row[] = [
    {
      name: "a wrong issuer path (discovery answers 404), client credentials",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "issuer",
      fix: /the discovery document at http:\/\/127\.0\.0\.1:\d+\/wrong\/\.well-known\/openid-configuration answered 404: check `issuer`/,
      run: () => attempt(service({ issuer: `${proxy.origin}/wrong` })),
    },
    {
      name: "a wrong issuer path (discovery answers 404), a login",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "issuer",
      fix: /\/wrong\/\.well-known\/openid-configuration answered 404: check `issuer`/,
      run: () => attempt({ issuer: `${proxy.origin}/wrong` }, true),
    },
    {
      name: "an issuer alias (localhost where the provider calls itself 127.0.0.1)",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "issuer-mismatch",
      fix: /the provider calls itself http:\/\/127\.0\.0\.1:\d+, not http:\/\/localhost:\d+ .*: use that as `issuer`/,
      run: () => attempt(service({ issuer: `http://localhost:${proxy.port}` })),
    },
    {
      name: "a wrong client secret (invalid_client)",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "client",
      fix: /refused this client's credentials \(invalid_client\): check `clientId`, `clientSecret` and `clientAuthentication`/,
      run: () => attempt(service({ clientSecret: WRONG_SECRET })),
    },
    {
      name: "an unknown client id, client credentials (oidc-provider: invalid_client)",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "client",
      fix: /\(invalid_client\): check `clientId`, `clientSecret` and `clientAuthentication`/,
      run: () => attempt(service({ clientId: "no-such-service" })),
    },
    {
      name: "an unknown client id, a public client's login (oidc-provider: invalid_client)",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "client",
      fix: /refused client "no-such-cli" \(invalid_client\): check `clientId`/,
      run: () => attempt({ clientId: "no-such-cli" }, true),
    },
    {
      name: "a scope the client may not have (invalid_scope)",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "scope",
      fix: /refused the scope "offline_access admin" \(invalid_scope\): check `scope`/,
      run: () => attempt({ scope: "offline_access admin" }, true),
    },
    {
      name: "a resource the provider does not know (invalid_target)",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "resource",
      fix: /does not know the resource "urn:no-such-api" \(invalid_target\): check `resource`/,
      run: () => attempt(service({ resource: "urn:no-such-api" })),
    },
    {
      name: "a grant the client is not registered for (oidc-provider: invalid_request)",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "grant",
      fix: /refused the refresh token grant of client "test-service" \(invalid_request\): check `grant` and `clientId`/,
      run: () => attempt({ clientId: idp.serviceClient.clientId, clientSecret: idp.serviceClient.clientSecret }, true),
    },
    {
      name: "loginWithDeviceCode at a wrong issuer path (discovery answers 404)",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "issuer",
      fix: /^loginWithDeviceCode: the discovery document at http:\/\/127\.0\.0\.1:\d+\/wrong\/\.well-known\/openid-configuration answered 404: check `issuer`$/,
      run: () => loginFails(() => loginWithDeviceCode({ ...deviceLogin(), issuer: `${proxy.origin}/wrong` })),
    },
    {
      name: "loginWithBrowser at an issuer alias",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "issuer-mismatch",
      fix: /^loginWithBrowser: the provider calls itself http:\/\/127\.0\.0\.1:\d+, not http:\/\/localhost:\d+ .*: use that as `issuer`$/,
      run: () =>
        loginFails(() =>
          loginWithBrowser({
            issuer: `http://localhost:${proxy.port}`,
            clientId: idp.clientId,
            allowInsecureRequests: true,
            openBrowser: () => assert.fail("no browser for a wrong issuer"),
          }),
        ),
    },
    {
      name: "loginWithDeviceCode with an unknown client id (oidc-provider: invalid_client)",
      kind: "configuration",
      errorClass: ProviderConfigurationError,
      code: "ERR_PROVIDER_CONFIGURATION",
      reason: "client",
      fix: /^loginWithDeviceCode: the identity provider refused client "no-such-cli" \(invalid_client\): check `clientId` \(a public client registered at http:\/\/127\.0\.0\.1:\d+\)$/,
      run: () => loginFails(() => loginWithDeviceCode({ ...deviceLogin(), clientId: "no-such-cli" })),
    },
    {
      name: "an http:// issuer without allowInsecureRequests (thrown by the factory)",
      kind: "configuration",
      errorClass: ConfigurationError,
      code: "ERR_CONFIGURATION",
      fix: /an http:\/\/ issuer needs `allowInsecureRequests: true`/,
      run: async () => {
        try {
          createTokenManager({ issuer: idp.issuer, clientId: idp.clientId });
        } catch (error) {
          return { error, seen: [] };
        }
        return assert.fail("createTokenManager accepted an http:// issuer");
      },
    },
    {
      name: "no login",
      kind: "reauth",
      errorClass: ReauthRequiredError,
      code: "ERR_REAUTH_REQUIRED",
      fix: /No login found for client "test-cli" .*: log in \(loginWithBrowser or loginWithDeviceCode\) and pass the result to setTokens\(\)/,
      run: () => attempt({}),
    },
    {
      name: "a DPoP login given to a manager without dpop (setTokens refuses it)",
      kind: "configuration",
      errorClass: ConfigurationError,
      code: "ERR_CONFIGURATION",
      fix: /is DPoP-bound .*but this token manager was created without `dpop`: pass `dpop: true`/,
      run: async () => {
        const seen: TokenEvent[] = [];
        const clock = createManualClock();
        const m = manager({ issuer: idp.issuer }, seen, clock);
        const { login, dpopKey, dpopJwk } = await boundLogin(idp);
        leaks.remember(login.access_token, login.refresh_token, dpopJwk.privateJwk.d);
        const error = await m.setTokens({ ...login, dpopKey }).then(
          () => assert.fail("a DPoP-bound login was taken by a bearer manager"),
          (e: unknown) => e,
        );
        return { error, manager: m, clock, seen };
      },
    },
    {
      name: "a DPoP login in the store, read by a manager without dpop (a new bearer login also helps)",
      kind: "reauth",
      errorClass: DPoPKeyError,
      code: "ERR_REAUTH_REQUIRED",
      reason: "unexpected",
      fix: /is DPoP-bound, but this token manager was created without `dpop`: pass `dpop: true`/,
      run: async () => {
        const store = memoryStore();
        const clock = createManualClock();
        const { login, dpopKey, dpopJwk } = await boundLogin(idp);
        leaks.remember(login.access_token, login.refresh_token, dpopJwk.privateJwk.d);
        await manager({ issuer: idp.issuer, store, dpop: true }, [], clock).setTokens({ ...login, dpopKey });
        const seen: TokenEvent[] = [];
        const m = manager({ issuer: idp.issuer, store }, seen, clock);
        const error = await m.getAccessToken().then(
          () => assert.fail("a DPoP-bound token was handed out as a bearer token"),
          (e: unknown) => e,
        );
        return { error, manager: m, clock, seen };
      },
    },
    {
      name: "an unreachable issuer (a closed port): may pass",
      kind: "wait",
      errorClass: TokenRefreshError,
      code: "ERR_TOKEN_REFRESH",
      fix: /could not be reached at http:\/\/127\.0\.0\.1:\d+\/\.well-known\/openid-configuration \(ECONNREFUSED\); if this persists, check `issuer`.*next attempt in 1 s/,
      run: () => attempt(service({ issuer: `http://127.0.0.1:${closedPort}` })),
    },
    {
      name: "Redis down (redisStore against a closed port): may pass",
      kind: "wait",
      errorClass: TokenStoreError,
      code: "ERR_TOKEN_STORE",
      reason: "unavailable",
      fix: /Redis is unreachable or failing.*Check the Redis server and the client's connection/,
      run: async () => {
        const client = new Redis(`redis://127.0.0.1:${closedPort}`, { maxRetriesPerRequest: 1, retryStrategy: () => 200 });
        client.on("error", () => {});
        try {
          return await attempt({ store: redisStore({ client, key: "failure-kinds:login", timeoutMs: 500 }) });
        } finally {
          client.disconnect();
        }
      },
    },
    {
      name: "no keyring (keyringStore without a D-Bus session)",
      kind: "configuration",
      errorClass: TokenStoreError,
      code: "ERR_TOKEN_STORE",
      reason: "no-keyring",
      fix: /no D-Bus session .*Run inside a D-Bus session with an unlocked keyring.*or use fileStore\(path\) instead/,
      run: async () => {
        const saved = process.env.DBUS_SESSION_BUS_ADDRESS;
        process.env.DBUS_SESSION_BUS_ADDRESS = "unix:path=/nonexistent/connect-oidc-failure-kinds-bus";
        try {
          return await attempt({
            store: keyringStore({ service: "connect-oidc-failure-kinds", account: "default", linuxStore: "secret-service" }),
          });
        } finally {
          if (saved === undefined) delete process.env.DBUS_SESSION_BUS_ADDRESS;
          else process.env.DBUS_SESSION_BUS_ADDRESS = saved;
        }
      },
    },
    {
      name: "a fileStore path under /proc",
      kind: "configuration",
      errorClass: ConfigurationError,
      code: "ERR_CONFIGURATION",
      fix: /\/proc\/connect-oidc-failure-kinds\/tokens\.json lies in \/proc.*Fix the configuration: give fileStore a path/,
      run: async () => {
        // In a child process, killed at the bound: a save that never ends (Node's recursive
        // mkdir under /proc, as before fileStore refused such paths) must fail this row, not hang it.
        leaks.remember("worker-access-token-0123456789abcdef", "worker-refresh-token-0123456789abcdef");
        const outcome = await saveInChild("/proc/connect-oidc-failure-kinds/tokens.json", 10 * SECOND);
        assert.ok(outcome.error !== undefined, "the save under /proc succeeded");
        assert.equal(outcome.error.name, "ConfigurationError", outcome.error.message);
        // The child's error, rebuilt with its class and message for the row's checks.
        return { error: new ConfigurationError(outcome.error.message), seen: [] };
      },
    },
  ];

  for (const row of rows) {
    it(`${row.kind}: ${row.name}`, { ...(row.todo !== undefined ? { todo: row.todo } : {}) }, async () => {
      const before = proxy.requests;
      const { error, manager: m, clock, seen } = await row.run();
      assert.ok(error instanceof row.errorClass, `${row.errorClass.name} expected, got ${String(error)}`);
      const e = error as Error & { code?: string; reason?: string };
      assert.equal(e.code, row.code);
      if (row.reason !== undefined) assert.equal(e.reason, row.reason);
      assert.match(e.message, row.fix);
      leaks.assertClean(error, row.name);
      for (const event of seen) leaks.assertClean(event, `${row.name}: event ${event.type}`);

      if (row.kind === "configuration") {
        assert.ok(error instanceof ConfigurationError || error instanceof TokenStoreError, "a configuration failure");
        assert.doesNotMatch(e.message, /log in/i, "a configuration failure never says to log in");
      }
      if (error instanceof ProviderConfigurationError && m !== undefined && clock !== undefined) {
        // Raised once, then failed fast: no further request reaches the identity provider.
        const requests = proxy.requests;
        assert.ok(requests > before, "the proxy saw the failing request");
        for (let i = 0; i < 3; i += 1) {
          await clock.advance(30 * SECOND);
          const again: unknown = await m.getAccessToken().then(
            () => assert.fail("a token after a configuration failure"),
            (x: unknown) => x,
          );
          assert.equal(again, error, "the same error, at once");
        }
        assert.equal(proxy.requests, requests, "no request after the configuration failure");
        assert.equal(seen.filter((x) => x.type === "misconfigured").length, 1, "one misconfigured event");
        assert.ok(!seen.some((x) => x.type === "reauth-required"), "no reauth-required");
      }
      if (row.kind === "wait" && error instanceof TokenRefreshError) {
        assert.ok(error.retryAt !== undefined, "the next attempt is scheduled");
        assert.ok(!seen.some((x) => x.type === "misconfigured" || x.type === "reauth-required"));
      }
    });
  }

  it("the same 404 after the configuration has worked is retried with backoff, reported, and recovers", async () => {
    const own = await startIdpProxy(idp.issuer);
    try {
      const seen: TokenEvent[] = [];
      const clock = createManualClock();
      const m = createTokenManager({
        issuer: own.origin,
        ...service(),
        allowInsecureRequests: true,
        clock,
        random: () => 0.5,
        onEvent: (e) => seen.push(e),
      } as TokenManagerOptions);
      managers.push(m);
      const first = await m.getAccessToken();
      leaks.remember(first);
      own.mode = "404"; // the provider's deploy: every URL answers 404 for a while

      // The token expires: the background refresh meets 404s, and retries with backoff.
      const failed = () => seen.filter((e) => e.type === "refresh-failed");
      await clock.advance(3600 * SECOND);
      await until(() => failed().length >= 1, "the first failed refresh");
      const error = await m.getAccessToken().then(
        () => assert.fail("a token during the outage"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof TokenRefreshError, String(error));
      assert.ok(error.cause instanceof ProviderConfigurationError, "the cause names what the answer says");
      assert.match(error.message, /answered 404: check `issuer` \(these settings worked before in this process: taken to pass\)/);
      leaks.assertClean(error);

      const requestsAfterFirst = own.requests;
      for (let round = 2; round <= 4; round += 1) {
        await clock.advance(60 * SECOND); // past any backoff so far (1 s doubling, jitter 0.5)
        await until(() => failed().length >= round, `failed refresh ${round}`);
      }
      assert.ok(own.requests > requestsAfterFirst, "retried");
      assert.ok(own.requests - requestsAfterFirst <= 8, `retried with backoff, not in a storm: ${own.requests - requestsAfterFirst}`);
      for (const e of failed()) assert.equal(e.type === "refresh-failed" && e.terminal, false);
      assert.ok(!seen.some((e) => e.type === "misconfigured" || e.type === "reauth-required"), "never silently fatal");

      own.mode = "pass";
      await clock.advance(120 * SECOND);
      await until(() => seen.some((e) => e.type === "refreshed"), "the refresh after the outage");
      const token = await m.getAccessToken();
      leaks.remember(token);
      assert.notEqual(token, first);
      for (const e of seen) leaks.assertClean(e, `event ${e.type}`);
    } finally {
      await own.close();
    }
  });
});

/** Save a login to fileStore(path) in a child process, killed (and failed) after `boundMs`. */
async function saveInChild(
  path: string,
  boundMs: number,
): Promise<{ ok?: true; error?: { name: string; code: string; reason: string; message: string } }> {
  const child = spawn(process.execPath, [bundledWorker(fileURLToPath(new URL("../support/store-save-worker.ts", import.meta.url))), path], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  const timer = setTimeout(() => child.kill("SIGKILL"), boundMs);
  const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
  clearTimeout(timer);
  if (signal === "SIGKILL") assert.fail(`fileStore(${path}).save() did not end within ${boundMs} ms`);
  assert.equal(code, 0, `the worker exited with ${code}`);
  return JSON.parse(output.trim());
}

/** A loopback port nothing listens on: bound, then closed. */
async function aClosedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Wait (real time, bounded) until `condition` holds; fails naming `what`. */
async function until(condition: () => boolean, what: string, boundMs = 10 * SECOND): Promise<void> {
  const end = performance.now() + boundMs;
  while (!condition()) {
    if (performance.now() > end) assert.fail(`timed out after ${boundMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

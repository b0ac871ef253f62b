/**
 * tokens.signOut({ revoke }) (issue 17 item 2) on the real identity provider: RFC 7009
 * revocation through openid-client with the client's authentication as configured (a public
 * client, and a confidential one on client_secret_post), after which the old refresh token
 * is refused; a failed revocation (a wrong secret) still signs out here and says so, with no
 * token in what it says; a provider that is down fails the revocation, not the sign-out;
 * `revoke: false` keeps the old behaviour (the provider keeps the login); and a second OS
 * process sharing the store sees the sign-out without presenting the old refresh token.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import * as oidc from "openid-client";
import { createTokenManager, RevocationError } from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { headlessLogin } from "../../src/testing/headless-login.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { bundledWorker } from "../support/worker-bundle.js";

const APP_CLIENT = "test-app-post";
const worker = resolve(import.meta.dirname, "../support/sign-out-worker.ts");

/** The identity provider's answer to a refresh with `refreshToken`: "ok" or its OAuth error. */
async function refreshAnswer(config: oidc.Configuration, refreshToken: string): Promise<string> {
  try {
    await oidc.refreshTokenGrant(config, refreshToken);
    return "ok";
  } catch (error) {
    return (error as { error?: string }).error ?? String(error);
  }
}

async function appConfig(idp: Idp, secret: string): Promise<oidc.Configuration> {
  return oidc.discovery(new URL(idp.issuer), APP_CLIENT, undefined, oidc.ClientSecretPost(secret), {
    execute: [oidc.allowInsecureRequests],
  });
}

/** A second process on the store; `ask` sends a command and waits (bounded) for its answer. */
function startSecondProcess(idp: Idp, path: string) {
  const child: ChildProcess = spawn(
    process.execPath,
    [bundledWorker(worker), "--issuer", idp.issuer, "--client-id", idp.clientId, "--path", path],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const pending: ((line: Record<string, unknown>) => void)[] = [];
  createInterface({ input: child.stdout! }).on("line", (text) => pending.shift()?.(JSON.parse(text)));
  const next = (what: string) =>
    new Promise<Record<string, unknown>>((resolveLine, reject) => {
      const timer = setTimeout(() => reject(new Error(`the second process did not answer "${what}" within 30 s`)), 30_000);
      pending.push((line) => {
        clearTimeout(timer);
        resolveLine(line);
      });
    });
  const ready = next("ready");
  return {
    ready,
    ask(command: string) {
      const answer = next(command);
      child.stdin!.write(`${command}\n`);
      return answer;
    },
    stop() {
      child.stdin!.end();
      child.kill();
    },
  };
}

describe("tokens.signOut() revokes at the real identity provider (RFC 7009)", () => {
  let idp: Idp;
  let dir: string;
  const leaks = createLeakScanner();

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 60 });
    dir = mkdtempSync(join(tmpdir(), "sign-out-"));
    leaks.remember(idp.postClient.clientSecret);
  });
  after(async () => {
    await idp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a public client: the refresh token is revoked, the store cleared, the state empty", async () => {
    const store = fileStore(join(dir, "public.json"));
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store });
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    const result = await tokens.signOut();
    assert.deepEqual(result, { revoked: true });
    assert.equal(await refreshAnswer(await idp.cliConfig(), login.refresh_token!), "invalid_grant");
    assert.equal(await store.load(), undefined);
    assert.equal((await tokens.status()).state, "empty");
  });

  it("a manager that has not loaded the login yet (a `logout` command) revokes the stored one", async () => {
    const path = join(dir, "cold.json");
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    using first = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store: fileStore(path) });
    await first.setTokens(login);
    using logout = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store: fileStore(path) });
    assert.deepEqual(await logout.signOut(), { revoked: true });
    assert.equal(await refreshAnswer(await idp.cliConfig(), login.refresh_token!), "invalid_grant");
  });

  it("a confidential client on client_secret_post: revoked with its secret; a wrong secret still signs out here and says why", async () => {
    const config = await appConfig(idp, idp.postClient.clientSecret);
    const options = {
      issuer: idp.issuer,
      clientId: APP_CLIENT,
      clientAuthentication: "client_secret_post" as const,
      allowInsecureRequests: true,
    };

    const wrongStore = fileStore(join(dir, "wrong.json"));
    const kept = await headlessLogin(config, "openid offline_access api");
    leaks.remember(kept.access_token, kept.refresh_token, kept.id_token);
    using wrong = createTokenManager({ ...options, clientSecret: "not-the-secret", store: wrongStore });
    await wrong.setTokens(kept);
    const failed = await wrong.signOut();
    assert.equal(failed.revoked, false);
    assert.ok(failed.error instanceof RevocationError);
    assert.equal(failed.error.reason, "failed");
    assert.match(failed.error.message, /invalid_client/);
    leaks.assertClean(failed, "the failed sign-out's result");
    assert.equal(await wrongStore.load(), undefined, "cleared all the same");
    const status = await wrong.status();
    assert.equal(status.state, "empty");
    assert.equal(status.lastFailure?.code, "ERR_REVOCATION");
    leaks.assertClean(status, "status after a failed revocation");
    assert.equal(await refreshAnswer(config, kept.refresh_token!), "ok", "the provider still holds that login: the failure was real");

    const login = await headlessLogin(config, "openid offline_access api");
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    using tokens = createTokenManager({ ...options, clientSecret: idp.postClient.clientSecret, store: fileStore(join(dir, "app.json")) });
    await tokens.setTokens(login);
    await tokens.getAccessToken();
    assert.deepEqual(await tokens.signOut(), { revoked: true });
    assert.equal(await refreshAnswer(config, login.refresh_token!), "invalid_grant");
  });

  it("the identity provider down: signed out here all the same, and the result says the revocation failed", async () => {
    const gone = await startIdp({ accessTokenTtl: 60 });
    const store = fileStore(join(dir, "down.json"));
    using tokens = createTokenManager({
      issuer: gone.issuer,
      clientId: gone.clientId,
      allowInsecureRequests: true,
      store,
      timeoutMs: 2000,
    });
    const login = await gone.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    await gone.close();
    const result = await tokens.signOut();
    assert.equal(result.revoked, false);
    assert.equal(result.error?.reason, "failed");
    leaks.assertClean(result, "the sign-out's result");
    assert.equal(await store.load(), undefined);
    assert.equal((await tokens.status()).lastFailure?.code, "ERR_REVOCATION");
  });

  it("revoke: false keeps the old behaviour: the store is cleared, the provider keeps the login", async () => {
    const store = fileStore(join(dir, "local.json"));
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store });
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    assert.deepEqual(await tokens.signOut({ revoke: false }), { revoked: false });
    assert.equal(await store.load(), undefined);
    assert.equal(await refreshAnswer(await idp.cliConfig(), login.refresh_token!), "ok");
    await assert.rejects(async () => tokens.signOut({ revoke: "yes" as unknown as boolean }), /revoke/);
  });

  it("a second OS process sharing the store sees the sign-out, without presenting the revoked refresh token", async () => {
    const path = join(dir, "shared.json");
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store: fileStore(path) });
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    const second = startSecondProcess(idp, path);
    try {
      await second.ready;
      assert.equal((await second.ask("token")).ok, true, "the second process uses the shared login");
      assert.deepEqual(await tokens.signOut(), { revoked: true });
      idp.resetStats();
      // A server refuses the revoked login's token: the second process looks for a new one and finds the sign-out.
      const refused = await second.ask("refused");
      assert.equal(refused.ok, false);
      assert.equal(refused.code, "ERR_REAUTH_REQUIRED");
      assert.equal(idp.stats.byGrantType.refresh_token, 0, "the revoked refresh token was not presented");
      const status = (await second.ask("status")).status as { state: string };
      assert.equal(status.state, "reauth-required");
      leaks.assertClean(status, "the second process's status");
    } finally {
      second.stop();
    }
  });
});

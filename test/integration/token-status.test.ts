/**
 * tokens.status() (issue 17 item 1) on the real identity provider with the manual clock: in
 * every state of the token machine — empty, ready, refreshing, backing-off,
 * reauth-required, misconfigured, closed — with the login's identity from its validated ID
 * token (kept in the store, read by a manager that has not loaded yet), DPoP's key
 * thumbprint, the last refresh and the last failure; never a token or a secret, and never a
 * request to the identity provider.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { decodeJwt } from "jose";
import { createTokenManager, ReauthRequiredError, TokenRefreshError, type TokenStatus } from "../../src/index.js";
import { loginWithDeviceCode } from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock } from "../support/manual-clock.js";

const PROFILE_SCOPE = "openid offline_access profile email api";

describe("tokens.status() on the real identity provider", () => {
  let idp: Idp;
  let dir: string;
  const leaks = createLeakScanner();
  const statuses: TokenStatus[] = [];
  const seen = (status: TokenStatus) => {
    statuses.push(status);
    return status;
  };

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 60, dpop: true });
    dir = mkdtempSync(join(tmpdir(), "status-"));
    leaks.remember(idp.serviceClient.clientSecret, idp.postClient.clientSecret);
  });
  after(async () => {
    // Nothing any status said holds a token or a secret.
    for (const status of statuses) leaks.assertClean(status, `status ${status.state}`);
    await idp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("empty, ready (with who logged in), and the same login read from the store by a manager that has not loaded", async () => {
    const path = join(dir, "login.json");
    const clock = createManualClock();
    const options = { issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, clock, refreshWindowMs: 0 };
    using tokens = createTokenManager({ ...options, store: fileStore(path) });
    const empty = seen(await tokens.status());
    assert.deepEqual(empty, { state: "empty", issuer: idp.issuer, clientId: idp.clientId, canRefresh: false });

    const login = await idp.login({ scope: PROFILE_SCOPE });
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    const ready = seen(await tokens.status());
    assert.equal(ready.state, "ready");
    assert.equal(ready.subject, idp.accountId);
    assert.equal(ready.name, "Test User");
    assert.equal(ready.email, `${idp.accountId}@example.test`);
    assert.equal(ready.preferredUsername, idp.accountId);
    assert.equal(ready.tokenType, "Bearer");
    assert.equal(ready.dpopThumbprint, undefined);
    assert.equal(ready.canRefresh, true);
    assert.equal(ready.scope, login.scope);
    assert.ok(ready.expiresAt !== undefined && Math.abs(ready.expiresAt - (clock.now() + 60_000)) < 5000, "expires in about 60 s");
    assert.equal(ready.lastRefreshAt, undefined);
    assert.equal(ready.lastFailure, undefined);

    // Another process (a new manager, not loaded yet): status() reads the store; the identity was kept with the login.
    idp.resetStats();
    using later = createTokenManager({ ...options, store: fileStore(path) });
    const loaded = seen(await later.status());
    assert.deepEqual(loaded, ready);
    assert.equal(idp.stats.tokenRequests, 0);
  });

  it("refreshing, then ready with the last refresh; backing-off with the failure; reauth-required; closed", async () => {
    const clock = createManualClock();
    using tokens = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      clock,
      refreshWindowMs: 0,
      random: () => 0,
    });
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    // A login without profile/email: the subject alone.
    const ready = seen(await tokens.status());
    assert.equal(ready.subject, idp.accountId);
    assert.equal(ready.email, undefined);

    await clock.advance(61_000); // the token has expired
    idp.setTokenLatency(300);
    const refreshed = tokens.getAccessToken();
    assert.equal(seen(await tokens.status()).state, "refreshing");
    leaks.remember(await refreshed);
    idp.setTokenLatency(0);
    const after = seen(await tokens.status());
    assert.equal(after.state, "ready");
    assert.equal(after.lastRefreshAt, clock.now());
    assert.ok((after.expiresAt ?? 0) > clock.now());

    await clock.advance(61_000);
    idp.setTokenOutage(503);
    await assert.rejects(tokens.getAccessToken(), TokenRefreshError);
    const backingOff = seen(await tokens.status());
    assert.equal(backingOff.state, "backing-off");
    assert.equal(backingOff.lastFailure?.code, "ERR_TOKEN_REFRESH");
    assert.match(backingOff.lastFailure?.message ?? "", /503/);
    assert.equal(backingOff.lastFailure?.at, clock.now());
    assert.ok((backingOff.retryAt ?? 0) > clock.now(), "the next attempt is ahead");
    assert.equal(backingOff.lastRefreshAt, after.lastRefreshAt);

    idp.setTokenOutage(undefined);
    await idp.revokeLogin();
    await clock.advance(2_000); // the backoff's retry runs (the timer) and finds the login dead
    await assert.rejects(tokens.getAccessToken(), ReauthRequiredError);
    const dead = seen(await tokens.status());
    assert.equal(dead.state, "reauth-required");
    assert.equal(dead.lastFailure?.code, "ERR_REAUTH_REQUIRED");
    assert.equal(dead.subject, idp.accountId, "who was logged in is still shown");

    tokens.close();
    assert.deepEqual(seen(await tokens.status()), {
      state: "closed",
      issuer: idp.issuer,
      clientId: idp.clientId,
      canRefresh: false,
      lastRefreshAt: after.lastRefreshAt,
      lastFailure: dead.lastFailure,
    });
  });

  it("a device code login brings who logged in (its validated ID token), which status() shows", async () => {
    let approval: Promise<void> | undefined;
    const login = await loginWithDeviceCode({
      issuer: idp.issuer,
      clientId: idp.clientId,
      allowInsecureRequests: true,
      scope: "openid offline_access profile email",
      onUserCode: (info) => {
        approval = idp.approveDeviceCode(info.userCode);
      },
    });
    await approval;
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    assert.deepEqual(login.identity, {
      subject: idp.accountId,
      name: "Test User",
      email: `${idp.accountId}@example.test`,
      preferredUsername: idp.accountId,
    });
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    await tokens.setTokens(login);
    assert.equal(seen(await tokens.status()).email, `${idp.accountId}@example.test`);
  });

  it("misconfigured: the provider refused the client's secret", async () => {
    using tokens = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.serviceClient.clientId,
      clientSecret: "not-the-secret",
      grant: "client_credentials",
      allowInsecureRequests: true,
    });
    await assert.rejects(tokens.getAccessToken());
    const status = seen(await tokens.status());
    assert.equal(status.state, "misconfigured");
    assert.equal(status.lastFailure?.code, "ERR_PROVIDER_CONFIGURATION");
    assert.equal(status.canRefresh, true);
  });

  it("DPoP: the token type and the thumbprint of the key the access token is bound to (cnf.jkt)", async () => {
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, dpop: true });
    const login = await idp.login({ dpop: true });
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    const status = seen(await tokens.status());
    assert.equal(status.tokenType, "DPoP");
    const cnf = decodeJwt(login.access_token).cnf as { jkt?: string };
    assert.equal(status.dpopThumbprint, cnf.jkt);
  });

  it("never contacts the identity provider: a stored login's status with the provider gone", async () => {
    const path = join(dir, "gone.json");
    const other = await startIdp({ accessTokenTtl: 60 });
    const options = { issuer: other.issuer, clientId: other.clientId, allowInsecureRequests: true, store: fileStore(path) };
    using first = createTokenManager(options);
    const login = await other.login({ scope: PROFILE_SCOPE });
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await first.setTokens(login);
    await other.close();
    using second = createTokenManager(options);
    const status = seen(await second.status());
    assert.equal(status.state, "ready");
    assert.equal(status.email, `${other.accountId}@example.test`);
  });
});

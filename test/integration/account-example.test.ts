/**
 * The example CLIs' `status` and `logout` commands (examples/account.ts) as a user runs
 * them, against the real identity provider and a file store: before any login, after one
 * (who is logged in, until when, no token on screen), and a logout that revokes the login
 * at the provider.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as oidc from "openid-client";
import { createTokenManager } from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { runExample } from "../support/run-example.js";

describe("examples/account.ts status and logout on the real identity provider", () => {
  let idp: Idp;
  let dir: string;
  const leaks = createLeakScanner();
  before(async () => {
    idp = await startIdp({ accessTokenTtl: 300 });
    dir = mkdtempSync(join(tmpdir(), "account-"));
  });
  after(async () => {
    await idp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("status before and after a login, then logout revokes it", { timeout: 60_000 }, async () => {
    const path = join(dir, "login.json");
    const flags = ["--issuer", idp.issuer, "--client-id", idp.clientId, "--store", `file:${path}`];

    const before = await runExample("account", ["status", ...flags]);
    assert.equal(before.code, 1, before.stderr);
    assert.match(before.stdout, /^state: empty$/m);

    const login = await idp.login({ scope: "openid offline_access profile email api" });
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, store: fileStore(path) });
    await tokens.setTokens(login);

    const status = await runExample("account", ["status", ...flags]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^state: ready$/m);
    assert.match(status.stdout, new RegExp(`^subject: ${idp.accountId} \\(Test User ${idp.accountId}@example\\.test\\)$`, "m"));
    assert.match(status.stdout, /^token type: Bearer$/m);
    assert.match(status.stdout, /^access token expires: \S+ \(in \d+ (s|min)/m);
    leaks.assertClean(status.stdout + status.stderr, "status output");

    const logout = await runExample("account", ["logout", ...flags]);
    assert.equal(logout.code, 0, logout.stderr);
    assert.equal(logout.stdout, "signed out (revoked at the identity provider)\n");
    await assert.rejects(oidc.refreshTokenGrant(await idp.cliConfig(), login.refresh_token!), { error: "invalid_grant" });
    const after = await runExample("account", ["status", ...flags]);
    assert.match(after.stdout, /^state: empty$/m);
  });
});

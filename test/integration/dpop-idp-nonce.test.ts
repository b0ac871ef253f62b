/**
 * The identity provider's DPoP nonce a login learned serves the token manager's first
 * refresh in the same process: a real oidc-provider that demands its nonce on every token
 * request answers the login's first request with `use_dpop_nonce`, and the manager's refresh
 * after it — memoryStore, or a second manager reading the login from a fileStore — meets no
 * such round trip (before, every new manager paid one).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createTokenManager, loginWithDeviceCode, type TokenEndpointResponse, type TokenEvent } from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { type Idp, startIdp } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { bounded } from "../support/dpop-attempt-budget.js";

describe("the IdP's DPoP nonce, from the login to the manager's first refresh (real IdP, nonces required)", () => {
  let idp: Idp;
  let dir: string;
  const leaks = createLeakScanner();
  const events: TokenEvent[] = [];

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600, dpop: { requireNonce: true } });
    dir = await mkdtemp(join(tmpdir(), "connect-oidc-dpop-nonce-"));
  });
  after(async () => {
    await idp.close();
    await rm(dir, { recursive: true, force: true });
    for (const e of events) leaks.assertClean(e, `event ${e.type}`);
  });

  const base = () => ({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, dpop: true as const });

  const deviceLogin = async (): Promise<TokenEndpointResponse> => {
    let approval: Promise<void> | undefined;
    idp.resetStats();
    const login = await loginWithDeviceCode({
      ...base(),
      scope: "openid offline_access api",
      onUserCode: (info) => {
        approval = idp.approveDeviceCode(info.userCode);
      },
    });
    await approval;
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    assert.ok((idp.stats.errors.use_dpop_nonce ?? 0) >= 1, "the login met the IdP's nonce demand");
    return login;
  };

  /** What a forced refresh cost at the IdP: token requests, and how many of them were use_dpop_nonce answers. */
  const forcedRefresh = async (tokens: ReturnType<typeof createTokenManager>, refused: string) => {
    idp.resetStats();
    const fresh = await tokens.getAccessToken({ rejected: refused });
    leaks.remember(fresh);
    assert.notEqual(fresh, refused, "refreshed");
    return { tokenRequests: idp.stats.byGrantType.refresh_token, useDpopNonce: idp.stats.errors.use_dpop_nonce ?? 0 };
  };

  it("memoryStore: the manager's first refresh carries the login's nonce (one token request, no use_dpop_nonce)", bounded, async () => {
    const login = await deviceLogin();
    const tokens = createTokenManager({ ...base(), onEvent: (e) => events.push(e) });
    await tokens.setTokens(login);
    assert.deepEqual(await forcedRefresh(tokens, login.access_token), { tokenRequests: 1, useDpopNonce: 0 });
    tokens.close();
  });

  it("fileStore, a second manager of the same process reading the login: no use_dpop_nonce either", bounded, async () => {
    const path = join(dir, `${randomUUID()}.json`);
    const login = await deviceLogin();
    const first = createTokenManager({ ...base(), store: fileStore(path), onEvent: (e) => events.push(e) });
    await first.setTokens(login);
    first.close();
    const second = createTokenManager({ ...base(), store: fileStore(path), onEvent: (e) => events.push(e) });
    assert.equal(await second.getAccessToken(), login.access_token);
    assert.deepEqual(await forcedRefresh(second, login.access_token), { tokenRequests: 1, useDpopNonce: 0 });
    // And the nonce the refresh used serves the next manager's refresh too.
    const held = await second.getAccessToken();
    second.close();
    const third = createTokenManager({ ...base(), store: fileStore(path), onEvent: (e) => events.push(e) });
    assert.deepEqual(await forcedRefresh(third, held), { tokenRequests: 1, useDpopNonce: 0 });
    third.close();
  });
});

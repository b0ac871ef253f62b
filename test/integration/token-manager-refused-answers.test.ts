/**
 * Token answers the token manager must not keep as they came, against the real oidc-provider
 * whose answers are rewritten: a refresh answer it refuses leaks no token into any cause and
 * keeps the rotated refresh token; values a store could not read back are refused at the door
 * or stored as dates it reads back; a refresh lifetime restated at every refresh warns once.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { ConfigurationError, createAuthInterceptor, TokenRefreshError, type TokenManager } from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { managerSuite } from "../support/manager-suite.js";
import { createManualClock } from "../support/manual-clock.js";
import { startServer } from "../support/server.js";

describe("token manager: answers it refuses or bounds (real oidc-provider)", () => {
  const s = managerSuite();
  const { leaks, manage, setup, get, rejects } = s;

  // A manager of an older build has no accepted(); the test then fails on its assertions.
  const accepted = (m: TokenManager, token: string) => (m as Partial<TokenManager>).accepted?.(token);

  describe("a refresh answer it refuses: no token material in any error cause", () => {
    for (const [name, fault] of [
      ["a negative expires_in", { expires_in: -5 }],
      ["an unknown token_type", { token_type: "weird" }],
    ] as const) {
      it(`a 200 answer with ${name}: no token in any cause; the rotated refresh token is kept, the login goes on`, async () => {
        const { manager, clock, seen, login } = await setup();
        const answered: string[] = [];
        s.idp.rewriteTokenResponse((body) => {
          answered.push(String(body.access_token), String(body.refresh_token));
          return { ...body, ...fault };
        });
        const invalidBefore = s.idp.stats.invalidGrant;
        const error = await rejects(manager.getAccessToken({ rejected: login.access_token }));
        leaks.remember(...answered);
        assert.ok(error instanceof TokenRefreshError, String(error));
        assert.equal(answered.length, 2, "the real IdP answered (and rotated the refresh token)");
        for (const text of [inspect(error, { depth: Number.POSITIVE_INFINITY }), inspect(seen, { depth: Number.POSITIVE_INFINITY })]) {
          for (const secret of answered) assert.ok(!text.includes(secret), "a token from the rejected answer leaked");
        }
        leaks.assertClean(error, "TokenRefreshError");
        for (const e of seen) leaks.assertClean(e, `event ${e.type}`);
        // The interceptor's error carries the same token-free cause.
        const server = await startServer({ idp: s.idp, http2: false });
        try {
          const client = createClient(
            EchoService,
            createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(manager)] }),
          );
          server.revoke(login.access_token);
          const callError = await rejects(client.say({ text: "x" }));
          for (const secret of answered) assert.ok(!inspect(callError, { depth: Number.POSITIVE_INFINITY }).includes(secret));
        } finally {
          await server.close();
        }
        // The provider is fixed: the next attempt uses the rotated refresh token, not the consumed one.
        s.idp.rewriteTokenResponse(undefined);
        await clock.advance(1500);
        const fresh = await get(manager, { rejected: login.access_token });
        assert.notEqual(fresh, login.access_token);
        assert.equal(s.idp.stats.invalidGrant, invalidBefore, "no invalid_grant: the consumed refresh token was not presented");
      });
    }
  });

  describe("values validated at the door", () => {
    it("setTokens refuses what the store would read back as corrupt", async () => {
      const m = manage({ clock: createManualClock() });
      for (const bad of [
        { access_token: "a".repeat(20), refresh_token: 42 },
        { access_token: "a".repeat(20), expires_in: "soon" },
        { access_token: "a".repeat(20), scope: ["api"] },
        { access_token: "" },
      ]) {
        const error = await rejects(m.setTokens(bad as never));
        assert.ok(error instanceof ConfigurationError, `${JSON.stringify(Object.keys(bad))}: ${String(error)}`);
      }
    });

    it("a huge expires_in (login or refresh) is stored as a date the store reads back", async () => {
      const dir = await mkdtemp(join(tmpdir(), "connect-oidc-huge-expiry-"));
      try {
        const path = join(dir, "tokens.json");
        const clock = createManualClock();
        const a = manage({ clock, store: fileStore(path) });
        const login = await s.idp.login();
        leaks.remember(login.access_token, login.refresh_token);
        await a.setTokens({ ...login, expires_in: 1e306 });
        const b = manage({ clock, store: fileStore(path) });
        assert.equal(await get(b), login.access_token, "the stored login reads back");
        s.idp.rewriteTokenResponse((body) => ({ ...body, expires_in: 1.8e305 }));
        const fresh = await get(b, { rejected: login.access_token });
        const c = manage({ clock, store: fileStore(path) });
        assert.equal(await get(c), fresh);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  it("a sliding refresh lifetime (refresh_expires_in restated at every refresh): login-expiring once", async () => {
    const { manager, clock, seen, login } = await setup();
    s.idp.rewriteTokenResponse((body) => ({ ...body, refresh_expires_in: 30 * 60 }));
    let token = login.access_token;
    for (let i = 0; i < 4; i += 1) {
      token = await get(manager, { rejected: token });
      accepted(manager, token);
      await clock.advance(5 * 60_000);
    }
    assert.equal(seen.filter((e) => e.type === "login-expiring").length, 1);
  });
});

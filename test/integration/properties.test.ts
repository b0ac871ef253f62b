/**
 * Property-based faults (fast-check): whatever a token endpoint answers, whatever a store
 * holds, whatever `setTokens` is handed — never a crash, always a typed error, never a
 * stored login that later reads as corrupt, never a token fragment in an error, an event or
 * a cause chain. Token answers come from the real oidc-provider (a real login, a real
 * rotation) with the arbitrary fields laid over its answer.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { ConnectOidcError, createTokenManager, TokenStoreError, type TokenEvent } from "../../src/index.js";
import { fileStore } from "../../src/node.js";
import { managerSuite } from "../support/manager-suite.js";
import { createManualClock } from "../support/manual-clock.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "connect-oidc-properties-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

// Values providers have been seen to send, and some no one should.
const anyValue = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 1e306, Number.MAX_SAFE_INTEGER, "3600", "soon", "", " 60 "),
  fc.string(),
  fc.array(fc.string(), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
);

const answerFaults = fc.record(
  {
    access_token: anyValue,
    refresh_token: anyValue,
    expires_in: anyValue,
    token_type: fc.oneof(anyValue, fc.constantFrom("Bearer", "bearer", "DPoP", "mac")),
    scope: anyValue,
    refresh_expires_in: anyValue,
  },
  { requiredKeys: [] },
);

describe("properties: whatever the token endpoint answers", () => {
  const s = managerSuite();

  it("a typed error or a token; the store always reads back; no token anywhere it should not be", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(answerFaults, async (fault) => {
        run += 1;
        const path = join(dir, `answer-${run}.json`);
        const seen: TokenEvent[] = [];
        const clock = createManualClock();
        const manager = s.keep(
          createTokenManager({ ...s.cli(), clock, store: fileStore(path), onEvent: (e) => seen.push(e), random: () => 0.5 }),
        );
        const login = await s.idp.login();
        s.leaks.remember(login.access_token, login.refresh_token, login.id_token as string | undefined);
        await manager.setTokens(login);
        const answered: string[] = [];
        s.idp.rewriteTokenResponse((body) => {
          answered.push(String(body.access_token), String(body.refresh_token));
          const merged: Record<string, unknown> = { ...body };
          for (const [k, v] of Object.entries(fault))
            if (v === undefined) delete merged[k];
            else merged[k] = v;
          return merged;
        });
        try {
          const token = await manager.getAccessToken({ rejected: login.access_token });
          assert.equal(typeof token, "string");
          assert.ok(token.length > 0);
        } catch (error) {
          assert.ok(error instanceof ConnectOidcError, `untyped: ${String(error)}`);
          s.leaks.remember(...answered);
          s.leaks.assertClean(error, "error");
        } finally {
          s.idp.rewriteTokenResponse(undefined);
          manager.close();
        }
        s.leaks.remember(...answered);
        for (const e of seen) s.leaks.assertClean(e, `event ${e.type}`);
        // Whatever happened, what the store holds reads back as a login.
        const stored = await fileStore(path).load();
        assert.ok(stored !== undefined);
        assert.ok(stored.expiresAt === undefined || Number.isFinite(stored.expiresAt));
      }),
      { numRuns: 40 },
    );
  });
});

describe("properties: whatever a store holds, whatever setTokens is handed", () => {
  const s = managerSuite();

  it("a token file with any content: a login or TokenStoreError 'corrupt', never echoing the content", async () => {
    let run = 0;
    const fragment = "SECRETSECRETSECRET-0123456789";
    const content = fc.oneof(
      fc.string(),
      fc.json(),
      fc
        .record({
          version: fc.oneof(fc.constant(1), anyValue),
          issuer: fc.oneof(fc.constant("https://id.example"), anyValue),
          clientId: fc.oneof(fc.constant("cli"), anyValue),
          accessToken: fc.oneof(fc.constant(fragment), anyValue),
          refreshToken: fc.oneof(fc.constant(fragment), anyValue),
          issuedAt: anyValue,
          expiresAt: anyValue,
          refreshExpiresAt: anyValue,
          // DPoP: the private JWK member `d` is as secret as the tokens.
          tokenType: fc.oneof(fc.constant("DPoP"), anyValue),
          dpopKey: fc.oneof(
            fc.record({
              algorithm: fc.oneof(fc.constant("ES256"), anyValue),
              publicJwk: fc.record({ kty: fc.constant("EC"), crv: fc.constant("P-256"), x: fc.constant("eA"), y: fc.constant("eQ") }),
              privateJwk: fc.record({
                kty: fc.oneof(fc.constant("EC"), anyValue),
                crv: fc.constant("P-256"),
                x: fc.oneof(fc.constant("eA"), anyValue),
                y: fc.constant("eQ"),
                d: fc.oneof(fc.constant(fragment), fc.constant(`${fragment}!`), anyValue),
              }),
            }),
            anyValue,
          ),
        })
        .map((r) => JSON.stringify(r)),
    );
    await fc.assert(
      fc.asyncProperty(content, async (text) => {
        run += 1;
        const path = join(dir, `stored-${run}.json`);
        await writeFile(path, `${text}${fragment}`.slice(0, text.length) || fragment, { mode: 0o600 });
        try {
          const stored = await fileStore(path).load();
          assert.ok(stored === undefined || (typeof stored === "object" && stored.version === 1));
        } catch (error) {
          assert.ok(error instanceof TokenStoreError && error.reason === "corrupt", String(error));
          assert.ok(!JSON.stringify({ m: error.message, s: error.stack }).includes(fragment));
        }
      }),
      { numRuns: 300 },
    );
  });

  it("setTokens with anything: ConfigurationError, or a login the store reads back", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(answerFaults, async (response) => {
        run += 1;
        const path = join(dir, `set-${run}.json`);
        const manager = s.keep(createTokenManager({ ...s.cli(), clock: createManualClock(), store: fileStore(path) }));
        try {
          await manager.setTokens(response as never);
        } catch (error) {
          assert.ok(error instanceof ConnectOidcError && error.code === "ERR_CONFIGURATION", String(error));
          return;
        } finally {
          manager.close();
        }
        const stored = await fileStore(path).load();
        assert.equal(stored?.accessToken, response.access_token);
      }),
      { numRuns: 300 },
    );
    s.leaks.remember((await s.idp.login()).access_token);
  });
});

/** Bad input gets a clear, typed error at once, never a crash deep inside. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigurationError, createAuthInterceptor, createTokenManager } from "../../src/index.js";
import { fileStore, keyringStore } from "../../src/node.js";

const issuer = "https://login.example.com";

describe("bad input", () => {
  it("createAuthInterceptor without a token provider", () => {
    assert.throws(() => createAuthInterceptor(undefined as never), ConfigurationError);
    assert.throws(() => createAuthInterceptor({} as never), /getAccessToken/);
  });

  it("createTokenManager with nonsense options", () => {
    assert.throws(() => createTokenManager({ issuer, clientId: "c", refreshWindowMs: -1 }), /refreshWindowMs/);
    assert.throws(() => createTokenManager({ issuer, clientId: "c", timeoutMs: Number.NaN }), /timeoutMs/);
    assert.throws(() => createTokenManager({ issuer, clientId: "c", grant: "password" as never }), ConfigurationError);
    assert.throws(() => createTokenManager({ issuer: "", clientId: "c" }), ConfigurationError);
  });

  it("setTokens without an access token", async () => {
    const m = createTokenManager({ issuer, clientId: "c" });
    await assert.rejects(m.setTokens({} as never), ConfigurationError);
    await assert.rejects(m.setTokens({ access_token: "" }), /no access_token/);
    m.close();
  });

  it("stores without a name", () => {
    assert.throws(() => fileStore(""), ConfigurationError);
    assert.throws(() => fileStore(undefined as never), ConfigurationError);
    assert.throws(() => keyringStore({} as never), ConfigurationError);
    assert.throws(() => keyringStore({ service: "app", account: "" }), /account/);
    assert.throws(() => keyringStore({ service: "app", account: "a", linuxStore: "kwallet" as never }), /linuxStore/);
  });

  it("errors carry a stable code and their class name", () => {
    const error = new ConfigurationError("x");
    assert.equal(error.code, "ERR_CONFIGURATION");
    assert.equal(ConfigurationError.code, "ERR_CONFIGURATION");
    assert.equal(error.name, "ConfigurationError");
  });

  it("a custom store whose load() throws at once: that call fails with its error, the next call reads again", async () => {
    let reads = 0;
    const login = {
      version: 1 as const,
      issuer: "https://issuer.example",
      clientId: "c",
      accessToken: "a-valid-token",
      issuedAt: Date.now(),
      expiresAt: Date.now() + 3_600_000,
    };
    const tokens = createTokenManager({
      issuer: login.issuer,
      clientId: login.clientId,
      store: {
        load() {
          reads += 1;
          if (reads === 1) throw new Error("the store is not ready yet");
          return Promise.resolve(login);
        },
        save: async () => {},
        clear: async () => {},
      },
    });
    try {
      await assert.rejects(tokens.getAccessToken(), /the store is not ready yet/);
      assert.equal(await tokens.getAccessToken(), "a-valid-token");
      assert.equal(reads, 2);
    } finally {
      tokens.close();
    }
  });
});

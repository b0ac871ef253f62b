/**
 * Both logins against hostile or broken input: options that cannot work, identity
 * provider answers openid-client refuses (the tokens must not ride along in the error),
 * whatever a local process or a web page sends to the loopback listener, and lifetimes
 * too long for setTimeout.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ConfigurationError, loginWithDeviceCode } from "../src/index.js";
import { loginWithBrowser } from "../src/node.js";
import { type Idp, startIdp } from "./support/idp.js";

let idp: Idp;

before(async () => {
  idp = await startIdp({ accessTokenTtl: 3600 });
});

after(async () => {
  await idp.close();
});

const base = () => ({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });

describe("login options", () => {
  it("refuses a non-http(s) issuer, a bad scope, resource or signal with a ConfigurationError naming the option", async () => {
    const onUserCode = () => {};
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ issuer: "ftp://127.0.0.1/" }, /`issuer` must be an https:\/\/ URL/],
      [{ issuer: 42 }, /`issuer` must be a string or URL/],
      [{ allowInsecureRequests: "yes" }, /allowInsecureRequests: true/],
      [{ scope: 42 }, /`scope` must be a non-empty string/],
      [{ scope: "" }, /`scope` must be a non-empty string/],
      [{ resource: ["urn:a"] }, /`resource` must be a non-empty string/],
      [{ signal: { aborted: false } }, /`signal` must be an AbortSignal/],
    ];
    for (const [bad, message] of cases) {
      for (const login of [
        () => loginWithDeviceCode({ ...base(), onUserCode, ...bad } as never),
        () => loginWithBrowser({ ...base(), openBrowser: () => {}, timeoutMs: 1_000, ...bad } as never),
      ]) {
        await assert.rejects(login(), (err: unknown) => {
          assert.ok(err instanceof ConfigurationError, `${JSON.stringify(bad)}: ${String(err)}`);
          assert.match(err.message, message);
          return true;
        });
      }
    }
  });
});

/**
 * Step-up and scope challenges (auth-challenge.ts, www-authenticate.ts): which
 * `WWW-Authenticate` values make a call fail at once with a typed cause, under which scheme,
 * with which `acrValues` / `maxAge` / `scope` — quoted values, several challenges, DPoP.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { challengeFailure } from "../../src/auth-challenge.js";
import { bearerScheme } from "../../src/auth-scheme-bearer.js";
import { InsufficientScopeError, StepUpRequiredError } from "../../src/index.js";

const URL_ = "https://api.example.test/svc/Method";
const refusal = (header: string, code = Code.Unauthenticated) => new ConnectError("refused", code, { "www-authenticate": header });

describe("step-up and scope challenges", () => {
  it("insufficient_user_authentication: Unauthenticated, StepUpRequiredError with acrValues and maxAge", () => {
    const error = challengeFailure(
      "Bearer",
      URL_,
      refusal('Bearer error="insufficient_user_authentication", error_description="step-up", acr_values="urn:a urn:b", max_age="300"'),
    );
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.Unauthenticated);
    const cause = error.cause;
    assert.ok(cause instanceof StepUpRequiredError);
    assert.equal(cause.code, "ERR_STEP_UP_REQUIRED");
    assert.equal(cause.acrValues, "urn:a urn:b");
    assert.equal(cause.maxAge, 300);
    assert.match(cause.message, /https:\/\/api\.example\.test.*acr_values "urn:a urn:b".*300 s.*loginWithBrowser/);
    assert.equal(error.metadata.get("www-authenticate")?.includes("insufficient_user_authentication"), true);
  });

  it("unquoted max_age, no acr_values; a max_age that is no whole number is left out", () => {
    const a = challengeFailure("Bearer", URL_, refusal('Bearer error="insufficient_user_authentication", max_age=60'))?.cause;
    assert.ok(a instanceof StepUpRequiredError);
    assert.equal(a.maxAge, 60);
    assert.equal(a.acrValues, undefined);
    const b = challengeFailure("Bearer", URL_, refusal('Bearer error="insufficient_user_authentication", max_age="-1"'))?.cause;
    assert.ok(b instanceof StepUpRequiredError);
    assert.equal(b.maxAge, undefined);
  });

  it("insufficient_scope keeps the server's code, cause InsufficientScopeError with scope (quoted, with an escape)", () => {
    const error = challengeFailure(
      "Bearer",
      URL_,
      refusal('Bearer error="insufficient_scope", scope="admin \\"x\\""', Code.PermissionDenied),
    );
    assert.equal(error?.code, Code.PermissionDenied);
    const cause = error?.cause;
    assert.ok(cause instanceof InsufficientScopeError);
    assert.equal(cause.code, "ERR_INSUFFICIENT_SCOPE");
    assert.equal(cause.scope, 'admin "x"');
  });

  it("several challenges: the call's scheme counts (a DPoP step-up next to a Bearer one; commas in quoted values)", () => {
    const header = 'Basic realm="a, b", DPoP algs="ES256", error="insufficient_user_authentication", acr_values="urn:dpop"';
    const dpop = challengeFailure("DPoP", URL_, refusal(header))?.cause;
    assert.ok(dpop instanceof StepUpRequiredError);
    assert.equal(dpop.acrValues, "urn:dpop");
    assert.equal(challengeFailure("Bearer", URL_, refusal(header)), undefined, "a DPoP challenge says nothing of a bearer call");
    const both = 'Bearer error="insufficient_scope", scope="s1", dpop error="insufficient_user_authentication", acr_values="urn:x"';
    assert.ok(challengeFailure("Bearer", URL_, refusal(both))?.cause instanceof InsufficientScopeError);
    assert.ok(challengeFailure("DPoP", URL_, refusal(both))?.cause instanceof StepUpRequiredError);
  });

  it("anything else asks for a new token: invalid_token, a bare challenge, a malformed header, no header, not a ConnectError", () => {
    for (const header of ['Bearer error="invalid_token"', "Bearer", 'Bearer error="insufficient_scope', ""]) {
      assert.equal(challengeFailure("Bearer", URL_, refusal(header)), undefined, header);
    }
    assert.equal(challengeFailure("Bearer", URL_, new ConnectError("refused", Code.Unauthenticated)), undefined);
    assert.equal(challengeFailure("Bearer", URL_, new Error("x")), undefined);
    const scheme = bearerScheme();
    assert.equal(scheme.answer(URL_, refusal('Bearer error="invalid_token"')).kind, "new-token");
    assert.equal(scheme.answer(URL_, refusal('Bearer error="insufficient_user_authentication"')).kind, "fail");
  });
});

/** The login tests' shared checks: a promise that must reject, and a LoginError naming what went wrong. */
import assert from "node:assert/strict";
import { LoginError } from "../../src/errors.js";

/** `rejection(promise)` returns what the promise rejected with; every such error also goes to `seen` (for a leak scan). */
export function rejectionInto(seen?: unknown[]): (promise: Promise<unknown>) => Promise<unknown> {
  return async (promise) => {
    try {
      await promise;
    } catch (err) {
      seen?.push(err);
      return err;
    }
    assert.fail("expected a rejection");
  };
}

export function assertLoginError(err: unknown, message: RegExp): asserts err is LoginError {
  assert.ok(err instanceof LoginError, `expected a LoginError, got ${String(err)}`);
  assert.equal(err.code, "ERR_LOGIN");
  assert.match(err.message, message);
}

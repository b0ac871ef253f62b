/**
 * The refused call, as the server tests await it: the ConnectError it failed with, kept in
 * `errors` for the leak scan that runs after the suite.
 */
import assert from "node:assert/strict";
import { ConnectError } from "@connectrpc/connect";

/** A `failure(call)` that resolves with the ConnectError `call` rejects with (pushed onto `errors`), and fails the test if it resolves. */
export function refusalOf(errors: unknown[]): (call: Promise<unknown>) => Promise<ConnectError> {
  return async (call) => {
    try {
      await call;
    } catch (error) {
      errors.push(error);
      assert.ok(error instanceof ConnectError, String(error));
      return error;
    }
    return assert.fail("expected the call to be refused");
  };
}

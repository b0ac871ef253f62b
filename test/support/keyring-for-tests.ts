/**
 * The private keyring of a test file (keyring-session.ts), started once at its top level.
 * `skip` says why keyring tests cannot run here, undefined when they can; with CI=true a
 * missing keyring is a failing test, never a silent skip.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { type PrivateKeyring, startPrivateKeyring } from "./keyring-session.js";

export async function keyringForTests(): Promise<{ readonly keyring: PrivateKeyring | string; readonly skip: string | undefined }> {
  const keyring =
    process.platform === "linux" ? await startPrivateKeyring() : "the keyring tests drive gnome-keyring and run on Linux only";
  const skip =
    typeof keyring === "string"
      ? `no private Secret Service could be started (${keyring}); install the packages in .ci/apt-packages.txt`
      : undefined;
  if (skip !== undefined && process.env.CI === "true") test("a Secret Service is available in CI", () => assert.fail(skip));
  return { keyring, skip };
}

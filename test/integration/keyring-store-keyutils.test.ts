/**
 * keyringStore on the Linux kernel keyring (keyutils), the backend @napi-rs/keyring uses
 * where no Secret Service runs (servers, containers, CI without gnome-keyring): what only
 * this backend does. The cases every store shares run against it in
 * test/integration/store-contract.test.ts (in a worker under `keyctl session -`).
 * Needs `keyctl` (Debian: keyutils). Skips without it locally; fails under CI=true.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { keyutilsForTests } from "../support/keyring-keyutils.js";
import type { KeyutilsAnswer } from "../support/keyring-keyutils-worker.js";

const run = promisify(execFile);
const childScript = fileURLToPath(new URL("../support/keyring-child.ts", import.meta.url));
const service = `connect-oidc-keyutils-test-${process.pid}`;
const unavailable = await keyutilsForTests();

describe("keyringStore on the kernel keyring (keyutils)", { skip: unavailable }, () => {
  let runtimeDir: string;
  before(async () => {
    runtimeDir = await mkdtemp(join(tmpdir(), "connect-oidc-keyutils-"));
  });
  after(async () => {
    await rm(runtimeDir, { recursive: true, force: true });
  });

  test("outside a session keyring: no-keyring, naming keyctl session", async (t) => {
    // This test process runs without `keyctl session`; in a desktop login session the
    // kernel keyring may work here, and there is nothing to show.
    const args = ["--import", "tsx", childScript, "load", service, "outside", "keyutils"];
    const { stdout } = await run(process.execPath, args, { env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir }, timeout: 60_000 });
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as KeyutilsAnswer;
    if (result.ok) return t.skip("this process already has a usable session keyring");
    assert.equal(result.name, "TokenStoreError");
    assert.equal(result.reason, "no-keyring", result.message);
    assert.match(result.message!, /keyctl session/);
    assert.match(result.message!, /fileStore/);
  });
});

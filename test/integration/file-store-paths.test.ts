/**
 * fileStore paths that can never hold a token file fail fast, with an error that names the
 * path and says to fix the configuration: a path in /proc or /sys (creating folders there
 * used to never return), a folder given as the file, a path through a regular file.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ConfigurationError, TokenStoreError } from "../../src/errors.js";
import { fileStore } from "../../src/node/file-store.js";
import { keyringStore } from "../../src/node/keyring-store.js";
import type { StoredTokens } from "../../src/types.js";

const tokens: StoredTokens = {
  version: 1,
  issuer: "https://issuer.example",
  clientId: "cli",
  accessToken: "at-SECRET-paths-access-61d0",
  refreshToken: "rt-SECRET-paths-refresh-2f7a",
  issuedAt: 1_700_000_000_000,
  expiresAt: 1_700_000_300_000,
};
const fast = 5_000; // a bound for "at once" on a loaded machine; these take milliseconds
let folder: string;

before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-paths-"));
});
after(async () => {
  await rm(folder, { recursive: true, force: true });
});

/** `promise`'s rejection within `fast` ms: a TokenStoreError naming `path`, with no token in it. */
async function failsFast(promise: Promise<unknown>, path: string, what: string): Promise<TokenStoreError> {
  const timer = sleep(fast, undefined, { ref: false }).then(() => assert.fail(`${what}: no answer within ${fast} ms`));
  const error = await Promise.race([promise, timer]).then(
    () => assert.fail(`${what}: expected a TokenStoreError`),
    (e: unknown) => e,
  );
  if (error instanceof assert.AssertionError) throw error; // no answer in time
  assert.ok(error instanceof TokenStoreError, `${what}: not a TokenStoreError: ${String(error)}`);
  assert.ok(error.message.includes(path), `${what}: the message names ${path}: ${error.message}`);
  for (const secret of [tokens.accessToken, tokens.refreshToken]) assert.ok(!error.message.includes(secret!), what);
  return error;
}

describe("fileStore paths that cannot hold a token file", () => {
  test("a path in /proc or /sys is a ConfigurationError at once, saying to fix the configuration", () => {
    for (const path of [
      "/proc/self/tokens.json",
      "/proc/1/tokens.json",
      "/proc/self/new/tokens.json",
      "/proc",
      "/sys/kernel/tokens.json",
    ]) {
      const error = (() => {
        try {
          fileStore(path);
        } catch (e) {
          return e;
        }
        return assert.fail(`fileStore(${path}) accepted the path`);
      })();
      assert.ok(error instanceof ConfigurationError, `${path}: ${String(error)}`);
      assert.equal(error.code, "ERR_CONFIGURATION");
      assert.ok(error.message.includes(path), error.message);
      assert.match(error.message, /cannot hold a token file/);
      assert.match(error.message, /Fix the configuration: give fileStore a path in a folder of this user's own/);
    }
    assert.doesNotThrow(() => fileStore("/process/tokens.json"), "only the kernel folders themselves");
  });

  test("a path into /proc through a link: save and lock fail fast with io, naming the path", {
    skip: process.platform !== "linux",
  }, async () => {
    const link = join(folder, "into-proc");
    await symlink("/proc/self", link);
    const path = join(link, "new", "tokens.json");
    const store = fileStore(path);
    const saved = await failsFast(store.save(tokens), path, "save");
    assert.equal(saved.reason, "io");
    assert.match(saved.message, /ENOENT: its folder is gone or cannot hold files/);
    assert.match(saved.message, /pick another path for fileStore/);
    const locked = await failsFast(
      store.lock!(async () => assert.fail("must not run")),
      `${path}.lock`,
      "lock",
    );
    assert.equal(locked.reason, "io");
    assert.match(locked.message, /give the store another path/);
  });

  test("a folder given as the file: load, save and clear fail fast with io, naming the path and the fix", async () => {
    const path = join(folder, "a-folder");
    await mkdir(path);
    const store = fileStore(path);
    const loaded = await failsFast(store.load(), path, "load");
    assert.equal(loaded.reason, "io");
    assert.match(loaded.message, /is a folder\. Give fileStore the path of a file/);
    assert.equal((await failsFast(store.save(tokens), path, "save")).reason, "io");
    assert.equal((await failsFast(store.clear(), path, "clear")).reason, "io");
  });

  test("a path through a regular file: load, save and lock fail fast with io, naming the path", async () => {
    const file = join(folder, "a-file");
    await writeFile(file, "");
    const path = join(file, "tokens.json");
    const store = fileStore(path);
    const loaded = await failsFast(store.load(), path, "load");
    assert.equal(loaded.reason, "io");
    assert.match(loaded.message, /ENOTDIR: a part of its path is a file, not a folder/);
    const saved = await failsFast(store.save(tokens), path, "save");
    assert.equal(saved.reason, "io");
    assert.match(saved.message, /ENOTDIR/);
    const locked = await failsFast(
      store.lock!(async () => assert.fail("must not run")),
      `${path}.lock`,
      "lock",
    );
    assert.equal(locked.reason, "io");
  });

  test("keyringStore's lock folder under /proc (XDG_RUNTIME_DIR): the lock fails fast with io naming the folder", async () => {
    const saved = process.env.XDG_RUNTIME_DIR;
    process.env.XDG_RUNTIME_DIR = "/proc/self/x";
    let store: ReturnType<typeof keyringStore>;
    try {
      store = keyringStore({ service: "connect-oidc-paths-test", account: "a" });
    } finally {
      if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
      else process.env.XDG_RUNTIME_DIR = saved;
    }
    const locked = await failsFast(
      store.lock!(async () => assert.fail("must not run")),
      "/proc/self/x/connect-oidc",
      "keyring lock",
    );
    assert.equal(locked.reason, "io");
    assert.match(locked.message, /Set XDG_RUNTIME_DIR to a folder of this user's/);
  });
});

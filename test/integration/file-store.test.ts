/**
 * What fileStore promises beyond the store contract (test/integration/store-contract.test.ts
 * runs the cases every store shares against it): private modes (0600 file, 0700 folder),
 * atomic replacement, read and write failures that are not "no login", and the lock folder
 * beside the file.
 */
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { inspect } from "node:util";
import { TokenStoreError } from "../../src/errors.js";
import { fileStore } from "../../src/node/file-store.js";
import type { StoredTokens } from "../../src/types.js";

const secrets = ["at-SECRET-access-4f1c", "rt-SECRET-refresh-9b2e"];
const tokens: StoredTokens = {
  version: 1,
  issuer: "https://issuer.example",
  clientId: "cli",
  accessToken: secrets[0],
  refreshToken: secrets[1],
  issuedAt: 1_700_000_000_000,
  expiresAt: 1_700_000_300_000,
  scope: "openid offline_access",
};
const posix = process.platform !== "win32";
let folder: string;
const errors: unknown[] = []; // every error seen, for the leak scan at the end

before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-file-"));
});
after(async () => {
  await rm(folder, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<TokenStoreError> {
  const error = await promise.then(
    () => assert.fail("expected a TokenStoreError"),
    (e: unknown) => e,
  );
  errors.push(error);
  assert.ok(error instanceof TokenStoreError, `not a TokenStoreError: ${String(error)}`);
  return error;
}

describe("fileStore", () => {
  test("round trip; 0600 file in a new 0700 folder; no temporary files left", async () => {
    const dir = join(folder, "new", "deeper");
    const path = join(dir, "tokens.json");
    const store = fileStore(path);
    await store.save(tokens);
    assert.deepEqual(await store.load(), tokens);
    assert.deepEqual(await fileStore(path).load(), tokens, "another store object reads it too");
    if (posix) {
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal((await stat(dir)).mode & 0o777, 0o700);
    }
    assert.deepEqual(await readdir(dir), ["tokens.json"]);
  });

  test("replacing a file makes it 0600 even when it was not", async () => {
    const path = join(folder, "loose.json");
    await writeFile(path, "{}");
    await chmod(path, 0o644);
    await fileStore(path).save(tokens);
    if (posix) assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  test("a concurrent reader never sees a partial file", async () => {
    const path = join(folder, "atomic.json");
    const store = fileStore(path);
    // Large values, so that a write in place would be caught half done.
    const a = { ...tokens, accessToken: "a".repeat(1 << 20) };
    const b = { ...tokens, accessToken: "b".repeat(1 << 20) };
    await store.save(a);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 40; i++) await store.save(i % 2 ? a : b);
      writing = false;
    })();
    let reads = 0;
    while (writing) {
      // Raw reads on the thread pool run alongside the writes.
      const text = await readFile(path, "utf8");
      const value = JSON.parse(text) as StoredTokens;
      assert.ok(value.accessToken === a.accessToken || value.accessToken === b.accessToken);
      reads++;
    }
    await writer;
    assert.ok(reads > 5, `only ${reads} reads overlapped the writes`);
    assert.deepEqual(await readdir(folder).then((names) => names.filter((n) => n.endsWith(".tmp"))), []);
  });

  test("an unreadable path is an error, not 'no login'", async () => {
    const path = join(folder, "a-folder.json");
    await mkdir(path);
    const error = await failure(fileStore(path).load());
    assert.equal(error.reason, "io");
    assert.ok(error.message.includes(path));
  });

  test("a save that cannot write is a typed error", async () => {
    const blocker = join(folder, "blocker");
    await writeFile(blocker, "a file where a folder should be");
    const error = await failure(fileStore(join(blocker, "tokens.json")).save(tokens));
    assert.equal(error.reason, "io");
  });

  test("lock holds <path>.lock beside the file for the whole callback", async () => {
    const path = join(folder, "locked.json");
    const store = fileStore(path);
    const order: string[] = [];
    await Promise.all([
      store.lock!(async () => {
        order.push("a in");
        assert.ok((await stat(`${path}.lock`)).isDirectory());
        await new Promise((resolve) => setTimeout(resolve, 20));
        order.push("a out");
      }),
      fileStore(path).lock!(async () => {
        order.push("b in");
        order.push("b out");
      }),
    ]);
    assert.deepEqual(order, ["a in", "a out", "b in", "b out"]);
    await assert.rejects(stat(`${path}.lock`), { code: "ENOENT" });
  });

  test("no error carries token material", () => {
    assert.ok(errors.length >= 2, `only ${errors.length} errors seen`);
    for (const error of errors) {
      for (const text of [String(error), (error as Error).message, inspect(error, { depth: 10 })]) {
        for (const secret of secrets) assert.ok(!text.includes(secret), `leaked in: ${text}`);
      }
    }
  });
});

/**
 * fileStore in a folder other users can write (sticky, mode 1777, like /tmp): another user
 * plants the token file, a link or the lock before this user's process reads them. Each
 * plant is made for real as another user (uid 65534, with util-linux's setpriv), so these
 * tests need root, as in CI. What holds is stated in SECURITY.md.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, rm, stat, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ReauthRequiredError, TokenStoreError } from "../../src/errors.js";
import { fileStore } from "../../src/node/file-store.js";
import { createTokenManager } from "../../src/token/manager.js";
import type { StoredTokens } from "../../src/types.js";
import { createLeakScanner } from "../support/leaks.js";

const nobody = 65534;
const canPlant = process.getuid?.() === 0 && hasSetpriv();
const skip = canPlant ? false : "needs root and setpriv (util-linux) to act as another user";

const issuer = "https://issuer.example";
const clientId = "cli";
const now = Date.now();
/** The login another user plants: valid for an hour, for this issuer and client. */
const planted: StoredTokens = {
  version: 1,
  issuer,
  clientId,
  accessToken: "at-ATTACKER-access-token-7d41e2c9",
  refreshToken: "rt-ATTACKER-refresh-token-5a90b3f1",
  issuedAt: now,
  expiresAt: now + 3_600_000,
};
const ours = {
  ...planted,
  accessToken: "at-OURS-access-token-0c6f8a2d5e",
  refreshToken: "rt-OURS-refresh-token-93b1d7e4a",
} satisfies StoredTokens;
const leaks = createLeakScanner();
leaks.remember(planted.accessToken, planted.refreshToken, ours.accessToken, ours.refreshToken);

let shared: string;
before(async () => {
  if (!canPlant) return;
  shared = await mkdtemp(join(tmpdir(), "connect-oidc-shared-"));
  await chmod(shared, 0o1777); // like /tmp: everyone may create files, only owners remove them
});
after(async () => {
  if (shared !== undefined) await rm(shared, { recursive: true, force: true });
});

function hasSetpriv(): boolean {
  try {
    execFileSync("setpriv", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Runs `script` (node, CommonJS, `fs` in scope, `args` its arguments) as user 65534. */
function asOtherUser(script: string, ...args: string[]): void {
  execFileSync(
    "setpriv",
    [
      `--reuid=${nobody}`,
      `--regid=${nobody}`,
      "--clear-groups",
      process.execPath,
      "-e",
      `const fs = require("node:fs"); const args = process.argv.slice(1); ${script}`,
      ...args,
    ],
    { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 },
  );
}

function plantLogin(path: string): void {
  asOtherUser("fs.writeFileSync(args[0], args[1], { mode: 0o600 })", path, JSON.stringify(planted));
}

/** The promise's rejection, which must be a TokenStoreError with `reason` naming `path`, token-free. */
async function refusal(promise: Promise<unknown>, reason: string, path: string): Promise<TokenStoreError> {
  const error = await promise.then(
    () => assert.fail(`expected a TokenStoreError "${reason}", but it succeeded (with the planted login?)`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof TokenStoreError, `not a TokenStoreError: ${String(error)}`);
  assert.equal(error.reason, reason, error.message);
  assert.ok(error.message.includes(path), `the message names ${path}: ${error.message}`);
  leaks.assertClean(error, "the error");
  return error;
}

function manager(path: string) {
  return createTokenManager({ issuer, clientId, store: fileStore(path) });
}

describe("fileStore refuses what another user planted", { skip }, () => {
  test("a login planted before the first load: the manager fails with unsafe-file and never serves it", async () => {
    const path = join(shared, "before-first-load.json");
    plantLogin(path);
    const tokens = manager(path);
    try {
      const error = await refusal(tokens.getAccessToken(), "unsafe-file", path);
      assert.match(error.message, new RegExp(`belongs to user ${nobody}, not to this user \\(0\\)`));
      assert.match(error.message, /a folder only this user can write/, "names the fix");
      assert.doesNotMatch(error.message, /log in again and pass|No login/, "not 'no login'");
      await refusal(fileStore(path).load(), "unsafe-file", path);
    } finally {
      tokens.close();
    }
  });

  test("a login planted after signOut: the next process fails with unsafe-file", async () => {
    const path = join(shared, "after-sign-out.json");
    const first = manager(path);
    await first.setTokens({ access_token: ours.accessToken, refresh_token: ours.refreshToken, token_type: "Bearer", expires_in: 3600 });
    assert.equal(await first.getAccessToken(), ours.accessToken);
    await first.signOut();
    await assert.rejects(first.getAccessToken(), ReauthRequiredError, "signed out");
    first.close();

    plantLogin(path);
    const next = manager(path);
    try {
      await refusal(next.getAccessToken(), "unsafe-file", path);
    } finally {
      next.close();
    }
  });

  test("a link planted to another user's file is not followed", async () => {
    const path = join(shared, "link.json");
    const theirs = join(shared, "theirs.json");
    plantLogin(theirs);
    asOtherUser("fs.symlinkSync(args[0], args[1])", theirs, path);
    const error = await refusal(fileStore(path).load(), "unsafe-file", path);
    assert.match(error.message, /is a symbolic link/);
  });

  test("a pipe planted as the token file is refused at once (reading it would wait forever)", async () => {
    const path = join(shared, "pipe.json");
    asOtherUser(`require("node:child_process").execFileSync("mkfifo", [args[0]])`, path);
    await refusal(within(5_000, fileStore(path).load(), "load of a planted pipe"), "unsafe-file", path);
  });

  test("a lock folder planted beside the file is refused at once, not waited for or taken over", async () => {
    const path = join(shared, "locked.json");
    asOtherUser("fs.mkdirSync(args[0], { mode: 0o700 })", `${path}.lock`);
    const started = performance.now();
    const error = await refusal(
      fileStore(path).lock!(async () => assert.fail("must not run under another user's lock")),
      "unsafe-file",
      `${path}.lock`,
    );
    assert.ok(performance.now() - started < 2_000, `took ${Math.round(performance.now() - started)} ms`);
    assert.match(error.message, new RegExp(`belongs to user ${nobody}`));
    assert.match(error.message, /rm -r /, "names the fix");
    assert.equal((await stat(`${path}.lock`)).uid, nobody, "their folder is left as it is");
  });

  test("a lock file, or a link as the lock, planted beside the file is refused", async () => {
    const asFile = join(shared, "lock-file.json");
    asOtherUser("fs.writeFileSync(args[0], '')", `${asFile}.lock`);
    await refusal(
      fileStore(asFile).lock!(async () => assert.fail("must not run")),
      "unsafe-file",
      `${asFile}.lock`,
    );
    const asLink = join(shared, "lock-link.json");
    const theirFolder = join(shared, "their-folder");
    asOtherUser("fs.mkdirSync(args[0]); fs.symlinkSync(args[0], args[1])", theirFolder, `${asLink}.lock`);
    const error = await refusal(
      fileStore(asLink).lock!(async () => assert.fail("must not run")),
      "unsafe-file",
      `${asLink}.lock`,
    );
    assert.match(error.message, /is a symbolic link/);
  });
});

describe("fileStore refuses a token file of this user's that others may read or write", { skip: process.platform === "win32" }, () => {
  let folder: string;
  before(async () => {
    folder = await mkdtemp(join(tmpdir(), "connect-oidc-modes-"));
  });
  after(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  test("group/other readable or writable: unsafe-file naming chmod 600; private again: loads", async () => {
    const path = join(folder, "tokens.json");
    const store = fileStore(path);
    await store.save(ours);
    for (const [mode, verb] of [
      [0o640, "read"],
      [0o604, "read"],
      [0o620, "written"],
      [0o602, "written"],
      [0o666, "read and written"],
    ] as const) {
      await chmod(path, mode);
      const error = await refusal(store.load(), "unsafe-file", path);
      assert.match(error.message, new RegExp(`can be ${verb} by other users \\(mode ${mode.toString(8)}\\)`));
      assert.match(error.message, /chmod 600/, "names the fix");
    }
    await chmod(path, 0o600);
    assert.deepEqual(await store.load(), ours);
  });

  test("a link of this user's own is refused too: fileStore only reads the file it writes", async () => {
    const target = join(folder, "target.json");
    await fileStore(target).save(ours);
    const path = join(folder, "own-link.json");
    await symlink(target, path);
    const error = await refusal(fileStore(path).load(), "unsafe-file", path);
    assert.match(error.message, /is a symbolic link/);
    await fileStore(path).save(ours); // a save replaces the link with a file of its own
    assert.ok((await stat(path)).isFile());
    assert.deepEqual(await fileStore(path).load(), ours);
  });
});

/** `promise`, or a failure naming `what` once `ms` have passed. */
async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  const timer = sleep(ms, undefined, { ref: false }).then(() => assert.fail(`${what}: no answer within ${ms} ms`));
  return Promise.race([promise, timer]);
}

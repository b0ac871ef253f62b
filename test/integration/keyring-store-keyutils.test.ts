/**
 * keyringStore on the Linux kernel keyring (keyutils), the backend @napi-rs/keyring uses
 * where no Secret Service runs (servers, containers, CI without gnome-keyring): the same
 * store contract as test/integration/keyring-store.test.ts checks on the Secret Service.
 *
 * The kernel keyring refuses a process without a session keyring, so the keyring work
 * runs in a worker started under `keyctl session -` (support/keyring-keyutils-worker.ts).
 * Needs `keyctl` (Debian: keyutils). Skips without it locally; fails under CI=true.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, execFile, spawn } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { keyringValueLimit } from "../../src/node/keyring-store.js";
import type { StoredTokens } from "../../src/types.js";
import type { KeyutilsAnswer, KeyutilsRequest } from "../support/keyring-keyutils-worker.js";

const run = promisify(execFile);
const workerScript = fileURLToPath(new URL("../support/keyring-keyutils-worker.ts", import.meta.url));
const childScript = fileURLToPath(new URL("../support/keyring-child.ts", import.meta.url));
const service = `connect-oidc-keyutils-test-${process.pid}`;
const secrets = ["at-SECRET-access-91fe", "rt-SECRET-refresh-0c27"];
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
const failures: KeyutilsAnswer[] = []; // every failed operation, for the leak scan at the end

const unavailable =
  process.platform !== "linux"
    ? "the kernel keyring is Linux only"
    : await run("keyctl", ["session", "-", "true"]).then(
        () => undefined,
        (e: Error) =>
          `no keyctl session could be started (${e.message.split("\n")[0]}); install keyutils (see .ci/apt-packages.txt) to run these tests`,
      );
if (unavailable !== undefined && process.env.CI === "true" && process.platform === "linux") {
  test("keyctl is available in CI", () => assert.fail(unavailable));
}

interface Worker {
  send(request: KeyutilsRequest): Promise<KeyutilsAnswer>;
  stop(): Promise<void>;
}

/** The worker in a new session keyring of its own, with a private runtime folder for locks. */
function startWorker(runtimeDir: string): Worker {
  const child: ChildProcessWithoutNullStreams = spawn(
    "keyctl",
    ["session", "-", process.execPath, "--import", "tsx", workerScript, service],
    { env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir } },
  );
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const answers = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let queue = Promise.resolve();
  return {
    send(request) {
      const next = queue.then(async () => {
        child.stdin.write(`${JSON.stringify(request)}\n`);
        const { value, done } = await answers.next();
        if (done) throw new Error(`the keyutils worker exited: ${stderr}`);
        const answer = JSON.parse(value) as KeyutilsAnswer;
        if (!answer.ok) failures.push(answer);
        return answer;
      });
      queue = next.then(
        () => {},
        () => {},
      );
      return next;
    },
    async stop() {
      child.stdin.end();
      await exited;
    },
  };
}

/** The value of a successful operation; fails the test with the worker's error otherwise. */
function succeeded(answer: KeyutilsAnswer): unknown {
  assert.equal(answer.ok, true, `expected success, got ${answer.name} ${answer.reason}: ${answer.message}`);
  return answer.value;
}

describe("keyringStore on the kernel keyring (keyutils)", { skip: unavailable }, () => {
  let runtimeDir: string;
  let worker: Worker;
  const accounts = new Set<string>();
  const send = (request: KeyutilsRequest) => {
    accounts.add(request.account);
    return worker.send(request);
  };

  before(async () => {
    runtimeDir = await mkdtemp(join(tmpdir(), "connect-oidc-keyutils-"));
    worker = startWorker(runtimeDir);
  });
  after(async () => {
    // Kernel keyring entries outlive the session (the persistent keyring): remove ours.
    for (const account of accounts) await send({ op: "clear", account }).catch(() => {});
    await worker.stop();
    await rm(runtimeDir, { recursive: true, force: true });
  });

  test("round trip; another process in the same session sees it", async (t) => {
    const account = "round-trip";
    assert.equal(succeeded(await send({ op: "save", account, tokens })), null);
    assert.deepEqual(succeeded(await send({ op: "load", account })), tokens);
    assert.deepEqual(succeeded(await send({ op: "child", childOp: "load", account })), { ok: true, value: tokens });

    const other = { ...tokens, accessToken: "at-from-the-child" };
    assert.deepEqual(succeeded(await send({ op: "child", childOp: "save", account, tokens: other })), { ok: true, value: null });
    assert.deepEqual(succeeded(await send({ op: "load", account })), other, "and the other way round");

    const rounds = 50;
    const started = performance.now();
    for (let i = 0; i < rounds; i++) {
      succeeded(await send({ op: "save", account, tokens }));
      succeeded(await send({ op: "load", account }));
    }
    t.diagnostic(`save + load ${((performance.now() - started) / rounds).toFixed(2)} ms (mean of ${rounds}, worker round trips included)`);
  });

  test("nothing stored is no login, and the probe leaves nothing behind", async () => {
    assert.equal(succeeded(await send({ op: "load", account: "empty" })), null);
    assert.equal(succeeded(await send({ op: "get", account: "empty (connect-oidc probe)" })), null);
  });

  test("clear removes the entry; clearing nothing is fine", async () => {
    const account = "clear";
    succeeded(await send({ op: "save", account, tokens }));
    succeeded(await send({ op: "clear", account }));
    assert.equal(succeeded(await send({ op: "load", account })), null);
    assert.equal(succeeded(await send({ op: "get", account })), null);
    succeeded(await send({ op: "clear", account }));
  });

  test("a corrupt entry is a typed error that does not echo it", async () => {
    const account = "corrupt";
    const writes: KeyutilsRequest[] = [
      { op: "set-text", account, text: `not json ${secrets[0]}` },
      { op: "set-text", account, text: JSON.stringify({ ...tokens, version: 7 }) },
      { op: "set-text", account, text: JSON.stringify({ ...tokens, refreshToken: 1, accessToken: 2, scope: secrets[1] }) },
      { op: "set-bytes", account, bytes: [0xff, 0xfe, 0x00] },
    ];
    for (const write of writes) {
      succeeded(await send(write));
      const answer = await send({ op: "load", account });
      assert.equal(answer.ok, false, "a corrupt entry must not load");
      assert.equal(answer.name, "TokenStoreError");
      assert.equal(answer.reason, "corrupt", answer.message);
      assert.match(answer.message!, new RegExp(`service "${service}", account "corrupt"`));
      assert.match(answer.message!, /log in again/);
    }
  });

  test("a login too large for the entry is refused before writing", async () => {
    const account = "too-large";
    succeeded(await send({ op: "save", account, tokens }));
    const huge = { ...tokens, refreshToken: `${secrets[0]}${"x".repeat(keyringValueLimit())}` };
    const answer = await send({ op: "save", account, tokens: huge });
    assert.equal(answer.reason, "too-large", answer.message);
    assert.match(answer.message!, /16384 bytes/);
    assert.match(answer.message!, /fileStore/);
    assert.deepEqual(succeeded(await send({ op: "load", account })), tokens, "the stored login is untouched");
  });

  test("an access token too large for the entry is left out; the refresh token is kept", async () => {
    const account = "big-access-token";
    const big = { ...tokens, accessToken: `${secrets[0]}${"x".repeat(keyringValueLimit())}` };
    succeeded(await send({ op: "save", account, tokens: big }));
    const { accessToken: _left, ...expected } = big;
    assert.deepEqual(succeeded(await send({ op: "load", account })), expected);
  });

  test("lock serializes callers with a lock file in the runtime folder", async () => {
    // One holder at a time: each "in" is followed by its own "out". Not the order of the
    // callers: keyringStore checks its runtime folder (file system calls) before queueing,
    // so three callers can reach the lock's queue in another order than they called.
    const order = succeeded(await send({ op: "lock-order", account: "lock" })) as string[];
    assert.equal(order.length, 6, order.join(", "));
    for (let i = 0; i < order.length; i += 2) assert.equal(order[i + 1], order[i]!.replace(" in", " out"), order.join(", "));
    assert.deepEqual(order.filter((e) => e.endsWith(" in")).sort(), ["a in", "b in", "c in"]);
    assert.ok((await stat(join(runtimeDir, "connect-oidc"))).isDirectory());
  });

  test("outside a session keyring: no-keyring, naming keyctl session", async (t) => {
    // This test process runs without `keyctl session`; in a desktop login session the
    // kernel keyring may work here, and there is nothing to show.
    const args = ["--import", "tsx", childScript, "load", service, "outside", "keyutils"];
    const { stdout } = await run(process.execPath, args, { env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir }, timeout: 60_000 });
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as KeyutilsAnswer;
    if (result.ok) return t.skip("this process already has a usable session keyring");
    failures.push(result);
    assert.equal(result.name, "TokenStoreError");
    assert.equal(result.reason, "no-keyring", result.message);
    assert.match(result.message!, /keyctl session/);
    assert.match(result.message!, /fileStore/);
  });

  test("no error carries token material", () => {
    assert.ok(failures.length >= 5, `only ${failures.length} failures seen`);
    for (const failure of failures) {
      for (const text of [failure.message, failure.text, failure.inspected]) {
        for (const secret of secrets) assert.ok(!text?.includes(secret), `leaked in: ${text}`);
      }
    }
  });
});

/**
 * The kernel keyring (keyutils) for tests: whether a session keyring can be had here, and
 * a worker (keyring-keyutils-worker.ts) started under `keyctl session -` that runs
 * keyringStore operations sent to it, one line of JSON each way. The kernel keyring
 * refuses a process without a session keyring, so the test process cannot use it itself.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, execFile, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { KeyutilsAnswer, KeyutilsRequest } from "./keyring-keyutils-worker.js";

const run = promisify(execFile);
const workerScript = fileURLToPath(new URL("./keyring-keyutils-worker.ts", import.meta.url));

/**
 * Why keyutils tests cannot run here, undefined when they can; with CI=true on Linux a
 * missing `keyctl` is a failing test, never a silent skip. Call at a test file's top level.
 */
export async function keyutilsForTests(): Promise<string | undefined> {
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
  return unavailable;
}

export interface KeyutilsWorker {
  send(request: KeyutilsRequest): Promise<KeyutilsAnswer>;
  stop(): Promise<void>;
}

/** The worker in a new session keyring of its own, with a private runtime folder for locks. */
export function startKeyutilsWorker(service: string, runtimeDir: string): KeyutilsWorker {
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
        return JSON.parse(value) as KeyutilsAnswer;
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

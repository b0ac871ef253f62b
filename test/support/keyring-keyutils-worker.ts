/**
 * keyringStore on the kernel keyring (keyutils) for the store contract and
 * test/integration/keyring-store-keyutils.test.ts (started by keyring-keyutils.ts).
 * The kernel keyring refuses a process without a session keyring, so the test process
 * cannot use it itself: it starts this worker under `keyctl session -` and sends it one
 * operation per line of JSON on stdin; each answer is one line of JSON on stdout.
 *
 * Operations: { id, op, account, tokens?, text?, bytes? } with op one of
 * load | save | clear (keyringStore), set-text | set-bytes | get (the raw entry),
 * lock-order (three callers of store.lock), child (one keyring-child.ts operation in a
 * process of its own, inside this session keyring).
 */
import { execFile } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { inspect, promisify } from "node:util";
import { AsyncEntry } from "@napi-rs/keyring";
import { keyringStore } from "../../src/node/keyring-store.js";
import type { StoredTokens } from "../../src/types.js";
import { threeCallers } from "./lock-callers.js";

export interface KeyutilsRequest {
  readonly op: "load" | "save" | "clear" | "set-text" | "set-bytes" | "get" | "lock-order" | "child";
  readonly account: string;
  readonly tokens?: StoredTokens;
  readonly text?: string;
  readonly bytes?: number[];
  /** For `child`: the keyring-child.ts operation. */
  readonly childOp?: "load" | "save" | "clear";
}

export interface KeyutilsAnswer {
  readonly id: number;
  readonly ok: boolean;
  readonly value?: unknown;
  readonly name?: string;
  readonly reason?: string;
  readonly message?: string;
  readonly text?: string;
  readonly inspected?: string;
}

const run = promisify(execFile);
const childScript = fileURLToPath(new URL("./keyring-child.ts", import.meta.url));
const service = process.argv[2] ?? "";
const options = { linux: { store: "keyutils" as const } };

async function perform(request: KeyutilsRequest): Promise<unknown> {
  const store = keyringStore({ service, account: request.account, linuxStore: "keyutils" });
  switch (request.op) {
    case "load":
      return (await store.load()) ?? null;
    case "save":
      return store.save(request.tokens!);
    case "clear":
      return store.clear();
    case "set-text":
      return new AsyncEntry(service, request.account, options).setPassword(request.text!);
    case "set-bytes":
      return new AsyncEntry(service, request.account, options).setSecret(Uint8Array.from(request.bytes!));
    case "get":
      return new AsyncEntry(service, request.account, options).getPassword();
    case "lock-order":
      return threeCallers((fn) => store.lock!(fn));
    case "child": {
      const args = ["--import", "tsx", childScript, request.childOp!, service, request.account, "keyutils"];
      const { stdout } = await run(process.execPath, [...args, JSON.stringify(request.tokens ?? {})], { timeout: 60_000 });
      return JSON.parse(stdout.trim().split("\n").at(-1)!);
    }
  }
}

const lines = createInterface({ input: process.stdin });
let id = 0;
for await (const line of lines) {
  const request = JSON.parse(line) as KeyutilsRequest;
  let answer: KeyutilsAnswer;
  try {
    answer = { id, ok: true, value: (await perform(request)) ?? null };
  } catch (error) {
    const e = error as { name?: string; reason?: string; message?: string };
    answer = {
      id,
      ok: false,
      name: e.name,
      reason: e.reason,
      message: e.message,
      text: String(error),
      inspected: inspect(error, { depth: 10 }),
    };
  }
  id++;
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}

/**
 * A process that takes a file lock, for the cross-process lock tests.
 * Usage:
 *   lock-worker.ts count <lockPath> <counterFile> <times> [startAt]
 *                                                          increments the counter <times> times under the lock
 *                                                          (first, with startAt, waits for that epoch ms)
 *   lock-worker.ts hold <lockPath>                         takes the lock, prints "held", waits to be killed
 *   lock-worker.ts work <lockPath>                         takes the lock, prints "held", waits for a line
 *                                                          on stdin, then prints what lock() gave as JSON:
 *                                                          { result, compromised } or { error }
 *   lock-worker.ts try <lockPath>                          waits up to 8 s for the lock, then prints what
 *                                                          lock() gave as JSON: { result, pid } or { error, pid }
 */
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { TokenStoreError } from "../../src/errors.js";
import { createFileLock } from "../../src/node/lock.js";
import { exitFlushed } from "./worker-end.js";

const [mode, lockPath = "", counterFile = "", times = "0", startAt] = process.argv.slice(2);
let compromised: string | null = null;
const fileLock = createFileLock(lockPath, {
  staleMs: 2_000,
  retryMs: 5,
  timeoutMs: 60_000,
  onCompromised: (error) => (compromised = error.reason),
});

if (mode === "count") {
  if (startAt !== undefined) await sleep(Math.max(0, Number(startAt) - Date.now()));
  for (let i = 0; i < Number(times); i++) {
    await fileLock.lock(async () => {
      const value = Number(await readFile(counterFile, "utf8"));
      // A gap between read and write: without mutual exclusion, updates get lost.
      await sleep(Math.random() * 2);
      await writeFile(counterFile, String(value + 1));
    });
  }
} else if (mode === "hold") {
  await fileLock.lock(async () => {
    process.stdout.write("held\n");
    await new Promise(() => setInterval(() => {}, 60_000)); // until killed
  });
} else if (mode === "work") {
  const outcome = await fileLock
    .lock(async () => {
      process.stdout.write("held\n");
      process.stdin.resume();
      await once(process.stdin, "data");
      return "refreshed and saved";
    })
    .then(
      (result) => ({ result, compromised }),
      (error: unknown) => ({ error: error instanceof TokenStoreError ? error.reason : String(error) }),
    );
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
  await exitFlushed(0);
} else if (mode === "try") {
  const outcome = await createFileLock(lockPath, { staleMs: 2_000, retryMs: 20, timeoutMs: 8_000 })
    .lock(async () => "taken over")
    .then(
      (result) => ({ result, pid: process.pid }),
      (error: unknown) => ({ error: error instanceof TokenStoreError ? error.reason : String(error), pid: process.pid }),
    );
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
  await exitFlushed(0);
} else {
  throw new Error(`unknown mode ${mode}`);
}

/**
 * A process that takes a file lock, for the cross-process lock tests.
 * Usage:
 *   lock-worker.ts count <lockPath> <counterFile> <times>  increments the counter <times> times under the lock
 *   lock-worker.ts hold <lockPath>                         takes the lock, prints "held", waits to be killed
 */
import { readFile, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { createFileLock } from "../../src/node/lock.js";

const [mode, lockPath = "", counterFile = "", times = "0"] = process.argv.slice(2);
const fileLock = createFileLock(lockPath, { staleMs: 2_000, retryMs: 5, timeoutMs: 60_000 });

if (mode === "count") {
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
} else {
  throw new Error(`unknown mode ${mode}`);
}

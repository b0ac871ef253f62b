/**
 * How a test worker ends: it lets a refresh in flight finish, so every token request the
 * identity provider counts is one a worker reported, and it exits only once its last line
 * has left.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { TokenManager } from "../../src/index.js";

/**
 * Waits (bounded: 5 s) while `tokens` is refreshing. A background refresh in flight at a
 * worker's deadline has reached the identity provider; close() would drop its result and event.
 */
export async function refreshEnded(tokens: Pick<TokenManager, "status">): Promise<void> {
  for (let waited = 0; waited < 5_000 && (await tokens.status()).state === "refreshing"; waited += 50) await sleep(50);
}

/**
 * Ends the process once what it wrote to stdout has been handed to the OS. Where stdout is a
 * pipe the parent reads slowly (asynchronous on POSIX), `process.exit()` right after a write
 * can cut the last line short: the parent then sees the process end "without a report line".
 * Never resolves: `await` it where `process.exit()` stood.
 */
export function exitFlushed(code: number): Promise<never> {
  return new Promise(() => {
    process.stdout.write("", () => process.exit(code));
  });
}

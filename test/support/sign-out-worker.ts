/**
 * A second OS process sharing a login through a fileStore, for the sign-out tests.
 *
 * Usage: node --import tsx test/support/sign-out-worker.ts --issuer I --client-id C --path P
 *
 * Prints {"kind":"ready"}, then answers one line per command read on stdin:
 *   token    getAccessToken()                          → {"kind":"token","ok":true} or {"kind":"token","ok":false,"code":...}
 *   refused  getAccessToken({ rejected: <last token> }) → {"kind":"refused",...} (as after a server's 401)
 *   status   status()                                  → {"kind":"status","status":{...}}
 * Token events are counted and printed with each answer (`events`). Nothing printed holds
 * token material: failures by their codes, the token never.
 */
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { createTokenManager, type TokenEvent } from "../../src/index.js";
import { fileStore } from "../../src/node.js";

const { values } = parseArgs({
  options: { issuer: { type: "string" }, "client-id": { type: "string" }, path: { type: "string" } },
});
const events: string[] = [];
const tokens = createTokenManager({
  issuer: String(values.issuer),
  clientId: String(values["client-id"]),
  store: fileStore(String(values.path)),
  allowInsecureRequests: true,
  refreshWindowMs: 0,
  onEvent: (event: TokenEvent) => {
    events.push(event.type);
  },
});
const print = (line: object): void => {
  process.stdout.write(`${JSON.stringify({ ...line, events })}\n`);
};
let last: string | undefined;

async function answer(command: string): Promise<void> {
  if (command === "status") return print({ kind: "status", status: await tokens.status() });
  try {
    last = await tokens.getAccessToken(command === "refused" && last !== undefined ? { rejected: last } : {});
    print({ kind: command, ok: true });
  } catch (error) {
    print({ kind: command, ok: false, code: (error as { code?: string }).code ?? (error as Error).name });
  }
}

const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(() => answer(line.trim()));
});
lines.on("close", () => {
  void queue.then(() => tokens.close());
});
print({ kind: "ready" });

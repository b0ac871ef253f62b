/**
 * Runs one keyringStore operation in a process of its own (its own D-Bus environment)
 * and prints the outcome as one line of JSON.
 * Usage: keyring-child.ts <load|save|clear> <service> <account> <linuxStore|-> [tokens JSON]
 */
import { inspect } from "node:util";
import { keyringStore } from "../../src/node/keyring-store.js";

const [op, service = "", account = "", linuxStore = "-", tokens = "{}"] = process.argv.slice(2);
const store = keyringStore({
  service,
  account,
  ...(linuxStore === "-" ? {} : { linuxStore: linuxStore as "secret-service" | "keyutils" }),
});

try {
  let value: unknown = null;
  if (op === "load") value = (await store.load()) ?? null;
  else if (op === "save") await store.save(JSON.parse(tokens));
  else if (op === "clear") await store.clear();
  else throw new Error(`unknown operation ${op}`);
  console.log(JSON.stringify({ ok: true, value }));
} catch (error) {
  const e = error as { name?: string; reason?: string; message?: string };
  console.log(
    JSON.stringify({
      ok: false,
      name: e.name,
      reason: e.reason,
      message: e.message,
      text: String(error),
      inspected: inspect(error, { depth: 10 }),
    }),
  );
}

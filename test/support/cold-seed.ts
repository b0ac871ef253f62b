/**
 * Stores a login for the cold-start bench and test in a process of its own (a keyring
 * store needs the private D-Bus session's environment). Run from the plain-JavaScript
 * copy (cold-build.ts): `node <copy>/test/support/cold-seed.js '<{ store, tokens } JSON>'`.
 */
import { fileStore, keyringStore } from "../../src/node.js";
import type { StoredTokens } from "../../src/types.js";
import type { ColdChildConfig } from "./cold-client.js";

async function main(): Promise<void> {
  const { store, tokens } = JSON.parse(process.argv[2] ?? "") as { store: ColdChildConfig["store"]; tokens: StoredTokens };
  const target = store.kind === "file" ? fileStore(store.path) : keyringStore({ service: store.service, account: store.account });
  await target.save(tokens);
  process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
}

main().catch((error: unknown) => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(error) })}\n`);
  process.exitCode = 1;
});

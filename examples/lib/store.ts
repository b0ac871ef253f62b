/**
 * `--store keyring|memory|file:<path>` for the example clients. Keyring by default:
 * every process of the same user then shares one login and one refresh.
 */
import { memoryStore, type TokenStore } from "connect-oidc";
import { fileStore, keyringStore } from "connect-oidc/node";
import { usageError } from "./cli.js";

export const STORE_HELP = "keyring (default) | memory | file:<path>";

export function storeFromFlag(flag: string | undefined, login: { readonly issuer: string; readonly clientId: string }): TokenStore {
  const value = flag ?? "keyring";
  if (value === "keyring") {
    return keyringStore({ service: "connect-oidc-examples", account: `${login.clientId} @ ${login.issuer}` });
  }
  if (value === "memory") return memoryStore();
  if (value.startsWith("file:") && value.length > "file:".length) return fileStore(value.slice("file:".length));
  usageError(`--store: expected ${STORE_HELP}, got ${JSON.stringify(value)}`);
}

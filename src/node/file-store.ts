import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { ConfigurationError, TokenStoreError } from "../errors.js";
import { parseStoredTokens, serializeStoredTokens } from "../stored-tokens.js";
import type { StoredTokens, TokenStore } from "../types.js";
import { createFileLock } from "./lock.js";
import { nodeCrypto } from "./node-crypto.js";

/**
 * Tokens in a JSON file readable by this user only (0600), replaced atomically, with a
 * cross-process lock beside it (`<path>.lock`). For machines without an OS keyring
 * (servers, containers, CI); the file is not encrypted.
 *
 * @example
 * ```ts
 * import { homedir } from "node:os";
 * import { join } from "node:path";
 * import { createTokenManager } from "connect-oidc";
 * import { fileStore } from "connect-oidc/node";
 *
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "my-cli",
 *   store: fileStore(join(homedir(), ".config", "my-cli", "login.json")),
 * });
 * ```
 */
export function fileStore(path: string): TokenStore {
  if (typeof path !== "string" || path === "") throw new ConfigurationError("fileStore: `path` must be a non-empty file path");
  const file = resolve(path);
  const where = `The token file ${file}`;
  const fileLock = createFileLock(`${file}.lock`);

  return {
    async load() {
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch (error) {
        // Only "not there" means "no login"; anything else must not pass for it.
        if (codeOf(error) === "ENOENT") return undefined;
        throw ioError("read", file, error);
      }
      return parseStoredTokens(text, where);
    },

    async save(tokens: StoredTokens) {
      const text = serializeStoredTokens(tokens);
      try {
        // 0700 applies only to folders created here; existing ones are the user's choice.
        await mkdir(dirname(file), { recursive: true, mode: 0o700 });
      } catch (error) {
        throw ioError("write", file, error);
      }
      // Readers see the old file or the new one, never half of one: write a temporary
      // file in the same folder (rename is atomic only within a file system), then
      // rename it over the target.
      const { randomBytes } = await nodeCrypto();
      const temporary = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
      try {
        const handle = await open(temporary, "wx", 0o600);
        try {
          await handle.writeFile(text, "utf8");
          await handle.sync(); // the rename must not land before the data does
        } finally {
          await handle.close();
        }
        await rename(temporary, file);
      } catch (error) {
        await rm(temporary, { force: true }).catch(() => {});
        throw ioError("write", file, error);
      }
    },

    async clear() {
      try {
        await rm(file, { force: true });
      } catch (error) {
        throw ioError("delete", file, error);
      }
    },

    lock: (fn, signal) => fileLock.lock(fn, signal),
  };
}

function ioError(action: "read" | "write" | "delete", file: string, error: unknown): TokenStoreError {
  const code = codeOf(error) ?? "unknown error";
  return new TokenStoreError(
    "io",
    `Cannot ${action} the token file ${file} (${code}). Check that this user owns it and its ` +
      `folder, or pick another path for fileStore.`,
    { cause: error },
  );
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * fileStore: the login in a private JSON file, for machines without an OS keyring. The file
 * is trusted only when this user wrote it and no one else can read or write it; writes
 * replace it atomically, under the cross-process lock beside it.
 */
import { constants, type Stats } from "node:fs";
import { type FileHandle, lstat, open, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { ConfigurationError, TokenStoreError } from "../errors.js";
import { parseStoredTokens, serializeStoredTokens } from "../stored-tokens.js";
import type { StoredTokens, TokenStore } from "../types.js";
import { createFileLock } from "./lock.js";
import { makeFolders } from "./make-folders.js";
import { nodeCrypto } from "./node-crypto.js";
import { notOursBecause, openToOthersBecause } from "./ownership.js";

/**
 * Tokens in a JSON file readable by this user only (0600), replaced atomically, with a
 * cross-process lock beside it (`<path>.lock`). For machines without an OS keyring
 * (servers, containers, CI); the file is not encrypted. A file at the path that this user
 * did not write (another owner, a link) or that others may read or write is refused with
 * TokenStoreError "unsafe-file", never read as a login.
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
  refuseKernelFolder(file);
  const where = `The token file ${file}`;
  const fileLock = createFileLock(`${file}.lock`);

  return {
    async load() {
      const text = await readOwnFile(file);
      return text === undefined ? undefined : parseStoredTokens(text, where);
    },

    async save(tokens: StoredTokens) {
      const text = serializeStoredTokens(tokens);
      try {
        // 0700 applies only to folders created here; existing ones are the user's choice.
        await makeFolders(dirname(file), 0o700);
      } catch (error) {
        throw ioError("write", file, error);
      }
      // Readers see the old file or the new one, never half of one: write a temporary
      // file in the same folder (rename is atomic only within a file system), then
      // rename it over the target. Opened exclusively ("wx"): a link planted under that
      // (random) name is not followed. rename replaces whatever is at the path, a link
      // included, with this user's own file.
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

// Not following a link at the path, and not waiting for a writer if the path is a pipe
// (open would block forever): both flags are 0 where they do not exist (Windows).
const readFlags = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/**
 * The token file's text, or undefined when there is none. Only a regular file of this
 * user's that group and others can neither read nor write is read; the checks are made on
 * the opened file (fstat), so the file cannot be swapped between the check and the read.
 */
async function readOwnFile(file: string): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, readFlags);
  } catch (error) {
    // Only "not there" means "no login"; anything else must not pass for it.
    if (codeOf(error) === "ENOENT") return undefined;
    // O_NOFOLLOW on a link: ELOOP (EMLINK on FreeBSD).
    if ((codeOf(error) === "ELOOP" || codeOf(error) === "EMLINK") && (await isLink(file))) {
      throw unsafeFile(file, "is a symbolic link");
    }
    throw ioError("read", file, error);
  }
  try {
    refuseUnlessOwnFile(file, await handle.stat());
    return await handle.readFile("utf8");
  } catch (error) {
    throw error instanceof TokenStoreError ? error : ioError("read", file, error);
  } finally {
    await handle.close().catch(() => {});
  }
}

function refuseUnlessOwnFile(file: string, info: Stats): void {
  const notOurs = notOursBecause(info);
  if (notOurs !== undefined) throw unsafeFile(file, notOurs);
  if (info.isDirectory()) {
    throw new TokenStoreError(
      "io",
      `The token file ${file} is a folder. Give fileStore the path of a file, e.g. ${join(file, "tokens.json")}.`,
    );
  }
  if (!info.isFile()) throw unsafeFile(file, "is not a regular file (a pipe, socket or device)");
  const open = openToOthersBecause(info, 0o066);
  if (open !== undefined) {
    throw new TokenStoreError(
      "unsafe-file",
      `The token file ${file} ${open}; it is not used. Make it private (chmod 600 ${file}); others may ` +
        `have copied the login meanwhile: log in again (or revoke the login) if that matters here.`,
    );
  }
}

function unsafeFile(file: string, why: string): TokenStoreError {
  return new TokenStoreError(
    "unsafe-file",
    `The token file ${file} ${why}: fileStore did not write it, so it may hold another account's ` +
      `login; it is not used. Give fileStore a path in a folder only this user can write (e.g. ` +
      `~/.config/<app>/tokens.json): in a folder others can write, such as /tmp, another user can ` +
      `create the file first. Or delete it (rm ${file}) and log in again.`,
  );
}

async function isLink(file: string): Promise<boolean> {
  return lstat(file).then(
    (info) => info.isSymbolicLink(),
    () => false,
  );
}

/**
 * Kernel file systems cannot hold a token file; a path in one is a configuration mistake,
 * refused at once (creating folders there used to never return).
 */
function refuseKernelFolder(file: string): void {
  const root = ["/proc", "/sys"].find((folder) => file === folder || file.startsWith(`${folder}/`));
  if (root === undefined) return;
  throw new ConfigurationError(
    `fileStore: ${file} lies in ${root}, a kernel file system that cannot hold a token file. ` +
      `Fix the configuration: give fileStore a path in a folder of this user's own, e.g. ` +
      `~/.config/<app>/tokens.json.`,
  );
}

/** What an errno code means for the token file's path. */
const hints: Readonly<Record<string, string>> = {
  ENOTDIR: "a part of its path is a file, not a folder",
  EISDIR: "it is a folder",
  ENOENT: "its folder is gone or cannot hold files",
  EACCES: "this user may not",
  EPERM: "this user may not",
  EROFS: "the file system is read-only",
};

function ioError(action: "read" | "write" | "delete", file: string, error: unknown): TokenStoreError {
  const code = codeOf(error) ?? "unknown error";
  const hint = hints[code] === undefined ? "" : `: ${hints[code]}`;
  return new TokenStoreError(
    "io",
    `Cannot ${action} the token file ${file} (${code}${hint}). Check that this user owns it and its ` +
      `folder, or pick another path for fileStore.`,
    { cause: error },
  );
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * keyringStore: the login in the OS keyring through @napi-rs/keyring, loaded on first use. A
 * locked or unreachable keyring is a TokenStoreError that says how to fix it, never "no
 * login"; the keyring has no lock of its own, so a file lock in the user's runtime folder
 * keeps processes from refreshing one login at once.
 */
import { lstat, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { AsyncEntry, EntryOptions } from "@napi-rs/keyring";
import { ConfigurationError, corruptLogin, TokenStoreError } from "../errors.js";
import { parseStoredTokens, serializeStoredTokens } from "../stored-tokens.js";
import type { StoredTokens, TokenStore } from "../types.js";
import { createFileLock, type FileLock } from "./lock.js";
import { makeFolders } from "./make-folders.js";
import { nodeCrypto } from "./node-crypto.js";

/**
 * Options of {@link keyringStore}: which entry of the OS keyring holds the login.
 *
 * @example
 * ```ts
 * import { keyringStore, type KeyringStoreOptions } from "connect-oidc/node";
 *
 * // One entry per issuer, so logins to two environments do not replace each other.
 * const options: KeyringStoreOptions = { service: "my-cli", account: `default@${new URL(issuer).host}` };
 * const store = keyringStore(options);
 * ```
 */
export interface KeyringStoreOptions {
  /** Names the application, e.g. "my-cli". */
  readonly service: string;
  /** Names the login within it, e.g. the user or the issuer. */
  readonly account: string;
  /** Linux only: pin a backend. Default: the Secret Service, else the kernel keyring. */
  readonly linuxStore?: "secret-service" | "keyutils";
}

/**
 * The largest serialized login this store writes. Windows Credential Manager caps a
 * secret at 2,560 bytes. Elsewhere 16 KiB: the kernel keyring's default quota for a
 * non-root user is about 20 KB for all of that user's keys (the Secret Service and the
 * macOS Keychain take far more, but one limit off Windows keeps the behaviour the same
 * whichever Linux backend answers).
 */
export function keyringValueLimit(platform: NodeJS.Platform = process.platform): number {
  return platform === "win32" ? 2_560 : 16 * 1024;
}

/**
 * Tokens in the OS keyring through @napi-rs/keyring, with a cross-process lock file in
 * a per-user runtime folder. A keyring that is unreachable, locked or holds a corrupt
 * entry gives a TokenStoreError naming the cause; it never passes for "no token stored".
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 * import { keyringStore } from "connect-oidc/node";
 *
 * // Every process of this user shares the login, and refreshes it one at a time.
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "my-cli",
 *   store: keyringStore({ service: "my-cli", account: "default" }),
 * });
 * ```
 */
export function keyringStore(options: KeyringStoreOptions): TokenStore {
  const { service, account } = options ?? {};
  if (typeof service !== "string" || service === "" || typeof account !== "string" || account === "") {
    throw new ConfigurationError(
      'keyringStore: `service` and `account` must be non-empty strings, e.g. { service: "my-cli", account: "default" }',
    );
  }
  if (options.linuxStore !== undefined && options.linuxStore !== "secret-service" && options.linuxStore !== "keyutils") {
    throw new ConfigurationError('keyringStore: `linuxStore` must be "secret-service" or "keyutils"');
  }
  const what = `the login (keyring service "${service}", account "${account}")`;
  const entryOptions: EntryOptions | undefined = options.linuxStore === undefined ? undefined : { linux: { store: options.linuxStore } };
  const main = entrySlot(service, account, entryOptions);
  // A separate entry, so probing never touches a login another process is storing.
  const probe = entrySlot(service, `${account} (connect-oidc probe)`, entryOptions);
  const runtimeFolder = runtimeDirectory();
  // Made on the first lock: its name is a hash, and node:crypto loads only then.
  let fileLock: Promise<FileLock> | undefined;
  const lockFile = (): Promise<FileLock> => {
    fileLock ??= nodeCrypto().then(({ createHash }) => {
      const name = createHash("sha256").update(`${service}\0${account}`).digest("hex").slice(0, 32);
      return createFileLock(join(runtimeFolder, `keyring-${name}.lock`));
    });
    return fileLock;
  };
  // Callers that arrive together share one check of the folder, so they reach the lock's
  // queue in the order they called (separate checks finish in any order).
  let preparing: Promise<void> | undefined;
  const preparedFolder = (): Promise<void> => {
    preparing ??= prepareRuntimeFolder(runtimeFolder).finally(() => {
      preparing = undefined;
    });
    return preparing;
  };

  /**
   * Runs one keyring call. The kernel keyring refuses the first access of some processes
   * with AccessDenied and then works, so that error gets one retry with a fresh entry.
   */
  async function call<T>(slot: EntrySlot, op: (entry: AsyncEntry) => Promise<T>): Promise<T> {
    const Entry = await loadAsyncEntry(what);
    for (let attempt = 1; ; attempt++) {
      try {
        return await op(slot.get(Entry));
      } catch (error) {
        slot.drop(); // a broken connection must not stick to the cached entry
        if (attempt === 1 && messagesOf(error).includes("AccessDenied")) continue;
        throw keyringError(error, what);
      }
    }
  }

  /**
   * A Secret Service that is locked, or has no keyring to write to, answers a read of a
   * missing entry with null, like "nothing stored". Only a write tells them apart: a
   * locked keyring fails it with the unlock-prompt error.
   */
  async function assertWritable(): Promise<void> {
    await call(probe, (entry) => entry.setSecret(probeValue));
    await call(probe, (entry) => entry.deleteCredential()).catch(() => {}); // a leftover is harmless
  }

  return {
    async load(): Promise<StoredTokens | undefined> {
      let bytes = await call(main, (entry) => entry.getSecret());
      if (bytes === null && process.platform === "linux") {
        await assertWritable();
        // On a desktop the probe may have raised an unlock prompt that the user accepted.
        bytes = await call(main, (entry) => entry.getSecret());
      }
      if (bytes === null) return undefined;
      const where = `The keyring entry (service "${service}", account "${account}")`;
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes));
      } catch {
        throw corruptLogin(where, "it is not UTF-8 text");
      }
      return parseStoredTokens(text, where);
    },

    async save(tokens: StoredTokens): Promise<void> {
      const limit = keyringValueLimit();
      const login = tokens;
      let bytes = new TextEncoder().encode(serializeStoredTokens(login));
      if (bytes.length > limit && login.accessToken !== undefined) {
        // Keep the part that matters: without the access token, other processes refresh
        // with the stored (current) refresh token instead of adopting; nothing is lost.
        const { accessToken: _dropped, ...rest } = login;
        bytes = new TextEncoder().encode(serializeStoredTokens(rest));
      }
      if (bytes.length > limit) {
        throw new TokenStoreError(
          "too-large",
          `Cannot keep ${what}: it takes ${bytes.length} bytes, over this store's limit of ` +
            `${limit} bytes (Windows Credential Manager caps a secret at 2,560 bytes; elsewhere ` +
            `the limit is 16 KiB, within the kernel keyring's per-user quota). Ask the identity ` +
            `provider for smaller tokens (fewer scopes or claims), or use fileStore(path).` +
            // The DPoP key cannot be left out: the tokens are bound to it.
            (login.dpopKey?.algorithm === "PS256" || login.dpopKey?.algorithm === "RS256"
              ? ` Its ${login.dpopKey?.algorithm} DPoP key alone takes about 1.9 KB: use dpop: { algorithm: "ES256" }.`
              : ""),
        );
      }
      // Raw UTF-8 bytes: on Windows a "password" is stored as UTF-16, halving the room.
      await call(main, (entry) => entry.setSecret(bytes));
    },

    async clear(): Promise<void> {
      await call(main, (entry) => entry.deleteCredential()); // false (nothing there) is fine
    },

    async lock<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      await preparedFolder();
      return (await lockFile()).lock(fn, signal);
    },
  };
}

interface EntrySlot {
  get(Entry: typeof AsyncEntry): AsyncEntry;
  drop(): void;
}

/**
 * One cached entry: the constructor connects to D-Bus synchronously (about 13 ms here),
 * so it is built once, not per call, and lazily, because it throws when there is no bus.
 */
function entrySlot(service: string, account: string, options: EntryOptions | undefined): EntrySlot {
  let entry: AsyncEntry | undefined;
  return {
    get: (Entry) => (entry ??= new Entry(service, account, options)),
    drop: () => {
      entry = undefined;
    },
  };
}

const probeValue = new TextEncoder().encode("probe");

type KeyringModule = typeof import("@napi-rs/keyring");
let keyringModule: Promise<KeyringModule> | undefined;

/**
 * The keyring's native module, loaded on the first keyring access: importing
 * `connect-oidc/node` (for fileStore, say) never loads it. A module that cannot load (its
 * platform package missing) is a TokenStoreError naming the cause, tried again next time.
 */
async function loadAsyncEntry(what: string): Promise<typeof AsyncEntry> {
  keyringModule ??= import("@napi-rs/keyring").catch((error: unknown) => {
    keyringModule = undefined;
    throw error;
  });
  try {
    const loaded = (await keyringModule) as KeyringModule & { readonly default?: KeyringModule };
    // Bundlers may hand a CommonJS module over as `default` only.
    return loaded.AsyncEntry ?? loaded.default?.AsyncEntry;
  } catch (error) {
    throw new TokenStoreError(
      "no-keyring",
      `Cannot use the OS keyring for ${what}: its native module (@napi-rs/keyring) could not be loaded ` +
        `(${messagesOf(error)}). Install the package's dependencies again (the platform package, e.g. ` +
        `@napi-rs/keyring-linux-x64-gnu, is an optional dependency), or use fileStore(path) instead.`,
      { cause: error },
    );
  }
}

/** Turns a keyring failure into a TokenStoreError naming the cause and the fix. */
function keyringError(error: unknown, what: string): TokenStoreError {
  const detail = messagesOf(error);
  const fileStoreHint = "or use fileStore(path) instead";
  if (/unlock prompt|IsLocked|is locked/i.test(detail)) {
    return new TokenStoreError(
      "locked",
      `The OS keyring holding ${what} is locked and was not unlocked (the unlock prompt was ` +
        `dismissed or could not be shown). Unlock it (log in to the desktop session, use your ` +
        `keyring app, or run \`echo -n "$PASSWORD" | gnome-keyring-daemon --replace --unlock ` +
        `--components=secrets\`) and retry, ${fileStoreHint}.`,
      { cause: error },
    );
  }
  if (/no result found|ServiceUnknown|org\.freedesktop\.secrets/i.test(detail)) {
    return new TokenStoreError(
      "no-keyring",
      `Cannot reach ${what}: the D-Bus session has no Secret Service with an unlocked default ` +
        `keyring (${detail}). Start one (e.g. \`echo -n "$PASSWORD" | gnome-keyring-daemon ` +
        `--unlock --components=secrets\`, or KeePassXC with its Secret Service), ${fileStoreHint}.`,
      { cause: error },
    );
  }
  if (/DBus|D-Bus|zbus|autolaunch|DBUS_SESSION_BUS_ADDRESS/i.test(detail)) {
    return new TokenStoreError(
      "no-keyring",
      `Cannot reach the OS keyring holding ${what}: no D-Bus session (${detail}). Run inside a ` +
        `D-Bus session with an unlocked keyring, such as a desktop login or \`dbus-run-session ` +
        `-- sh -c 'echo -n "$PASSWORD" | gnome-keyring-daemon --unlock --components=secrets; ` +
        `<command>'\` (gnome-keyring), ${fileStoreHint}.`,
      { cause: error },
    );
  }
  if (/AccessDenied/.test(detail)) {
    return new TokenStoreError(
      "no-keyring",
      `The kernel keyring refused access to ${what} (AccessDenied): this process has no usable ` +
        `session keyring. Run it in a login session (or under \`keyctl session -\`), use the ` +
        `Secret Service (linuxStore: "secret-service"), ${fileStoreHint}.`,
      { cause: error },
    );
  }
  return new TokenStoreError(
    "keyring-error",
    `The OS keyring failed on ${what} (${detail}). Check the keyring service, ${fileStoreHint}.`,
    { cause: error },
  );
}

/**
 * The message of an error with those of its causes that it does not already contain
 * (the native errors nest the useful part, often repeated in the outer message).
 */
function messagesOf(error: unknown): string {
  let text = "";
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const message = e instanceof Error ? e.message : String(e);
    if (!text.includes(message)) text = text === "" ? message : `${text}: ${message}`;
    e = e instanceof Error ? e.cause : undefined;
  }
  return text;
}

/** Per user and short-lived: $XDG_RUNTIME_DIR, else a per-user folder in the temp dir. */
function runtimeDirectory(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime) return join(runtime, "connect-oidc");
  const user = process.getuid?.() ?? "user"; // on Windows tmpdir() is per user already
  return join(tmpdir(), `connect-oidc-${user}`);
}

/**
 * Creates the runtime folder (0700) and checks it before each lock: in a shared temp
 * folder another user can create it first, and hold or remove our locks in it. It must be
 * a real folder (not a link) owned by this user that no one else may write, in a parent
 * that others cannot rename it out of (not writable by them, or sticky like /tmp).
 */
async function prepareRuntimeFolder(folder: string): Promise<void> {
  try {
    await makeFolders(folder, 0o700);
  } catch (error) {
    throw new TokenStoreError(
      "io",
      `Cannot create the keyring store's lock folder ${folder} (${(error as { code?: string }).code ?? String(error)}). ` +
        `Set XDG_RUNTIME_DIR to a folder of this user's.`,
      { cause: error },
    );
  }
  const uid = process.getuid?.();
  if (uid === undefined) return; // Windows: the temp folder is per user
  const [own, parent] = await Promise.all([lstat(folder), stat(dirname(folder))]);
  const problem = !own.isDirectory()
    ? "is not a folder but a link or a file"
    : own.uid !== uid
      ? `belongs to user ${own.uid}, not to this user (${uid})`
      : (own.mode & 0o022) !== 0
        ? `can be written by other users (mode ${(own.mode & 0o7777).toString(8)})`
        : (parent.mode & 0o022) !== 0 && (parent.mode & 0o1000) === 0
          ? `lies in ${dirname(folder)}, which other users can write (mode ${(parent.mode & 0o7777).toString(8)}, no sticky bit)`
          : undefined;
  if (problem === undefined) return;
  throw new TokenStoreError(
    "unsafe-folder",
    `The keyring store's lock folder ${folder} ${problem}, so another user could hold or remove ` +
      `its locks; it is not used. Remove it (it is created again, private to this user), or set ` +
      `XDG_RUNTIME_DIR to a folder only this user can write (mode 700).`,
  );
}

/**
 * memoryStore: the login kept in this process only (the default store), with a lock that
 * lets several managers of one process refresh it one at a time, bounded like the file lock.
 */
import { TokenStoreError } from "./errors.js";
import { createLockQueue } from "./lock-queue.js";
import { checkDuration } from "./options.js";
import type { StoredTokens, TokenStore } from "./types.js";

/**
 * Options of {@link memoryStore}.
 *
 * @example
 * ```ts
 * import { type MemoryStoreOptions, memoryStore } from "connect-oidc";
 *
 * const options: MemoryStoreOptions = { lockTimeoutMs: 5_000 };
 * const store = memoryStore(options);
 * ```
 */
export interface MemoryStoreOptions {
  /** Give up waiting for another caller's `lock()` after this long (TokenStoreError "lock-timeout"). Default 30 s. */
  readonly lockTimeoutMs?: number;
}

/**
 * Tokens kept in this process only: the default store. Its lock lets several managers
 * of one process share it the way processes share a file or keyring store; a caller that
 * waits for it gives up when its signal aborts (with the signal's reason) or after
 * `lockTimeoutMs` (TokenStoreError "lock-timeout"). It keeps objects as they are
 * (`keepsCryptoKeys`): a DPoP key stays a CryptoKeyPair whose private key cannot be exported.
 *
 * @example
 * ```ts
 * import { createTokenManager, memoryStore } from "connect-oidc";
 *
 * // Two managers (say, for two transports) sharing one login: one refresh for both.
 * const store = memoryStore();
 * const forApi = createTokenManager({ issuer, clientId, store });
 * const forEvents = createTokenManager({ issuer, clientId, store });
 * await forApi.setTokens(login);
 * ```
 */
export function memoryStore(options: MemoryStoreOptions = {}): TokenStore {
  checkDuration("memoryStore", "lockTimeoutMs", options?.lockTimeoutMs, 0);
  const lockTimeoutMs = options?.lockTimeoutMs ?? 30_000;
  let tokens: StoredTokens | undefined;
  const queue = createLockQueue();
  const timedOut = () =>
    new TokenStoreError(
      "lock-timeout",
      `Gave up after ${lockTimeoutMs} ms waiting for the lock of a memoryStore: another caller in this process ` +
        `holds it (a refresh that takes long). Retry later, or raise lockTimeoutMs.`,
    );
  return {
    keepsCryptoKeys: true,
    async load() {
      return tokens;
    },
    async save(next) {
      tokens = next;
    },
    async clear() {
      tokens = undefined;
    },
    async lock<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      const leave = await queue.enter(signal, performance.now() + lockTimeoutMs, timedOut);
      try {
        return await fn();
      } finally {
        leave();
      }
    },
  };
}

import type { StoredTokens, TokenStore } from "./types.js";

/**
 * Tokens kept in this process only: the default store. Its lock lets several managers
 * of one process share it the way processes share a file or keyring store. It keeps
 * objects as they are (`keepsCryptoKeys`): a DPoP key stays a CryptoKeyPair whose
 * private key cannot be exported.
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
export function memoryStore(): TokenStore {
  let tokens: StoredTokens | undefined;
  let tail: Promise<unknown> = Promise.resolve();
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
    lock<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      const run = tail.then(() => {
        signal?.throwIfAborted();
        return fn();
      });
      // The next holder waits for this one, whatever its outcome.
      tail = run.catch(() => {});
      return run;
    },
  };
}

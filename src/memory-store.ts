import type { StoredTokens, TokenStore } from "./types.js";

/** Tokens kept in this process only: the default store. */
export function memoryStore(): TokenStore {
  let tokens: StoredTokens | undefined;
  return {
    async load() {
      return tokens;
    },
    async save(next) {
      tokens = next;
    },
    async clear() {
      tokens = undefined;
    },
  };
}

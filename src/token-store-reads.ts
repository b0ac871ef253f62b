/**
 * The token manager's reads of the store outside a refresh: the login at startup, and —
 * while re-login is required — whether another process has logged in meanwhile. Each is
 * shared by the callers that ask at the same time.
 */
import type { Machine } from "./token-machine.js";
import type { StoredTokens, TokenStore } from "./types.js";

export interface StoreReads {
  /** Read the login at startup. A failing store rejects (the caller sees why); the next call reads again. */
  load(): Promise<void>;
  /** Look for another process's login; an unreadable store holds none. */
  recheck(): Promise<void>;
}

export function createStoreReads(
  machine: Machine,
  store: TokenStore,
  ours: (stored: StoredTokens | undefined) => StoredTokens | undefined,
): StoreReads {
  let loading: Promise<void> | undefined;
  let rechecking: Promise<void> | undefined;
  return {
    load: () =>
      (loading ??= (async () => {
        try {
          machine.apply({ type: "loaded", stored: ours(await store.load()) });
        } finally {
          loading = undefined;
        }
      })()),
    recheck: () =>
      (rechecking ??= (async () => {
        const stored = await store.load().then(ours, () => undefined);
        const { wall, monotonic } = machine.now();
        machine.apply({ type: "rechecked", stored, at: monotonic, wallNow: wall });
      })().finally(() => {
        rechecking = undefined;
      })),
  };
}

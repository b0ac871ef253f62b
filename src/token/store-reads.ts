/**
 * The token manager's reads of the store outside a refresh: the login at startup, and —
 * while re-login is required — whether another process has logged in meanwhile. Each is
 * shared by the callers that ask at the same time.
 */
import { createSingleFlight } from "../single-flight.js";
import type { ReauthRequiredError } from "../errors.js";
import type { Machine } from "./machine.js";
import type { StoredTokens, TokenStore } from "../types.js";

export interface StoreReads {
  /** Read the login at startup. A failing store rejects (the caller sees why); the next call reads again. */
  load(): Promise<void>;
  /** Look for another process's login; an unreadable store holds none. */
  recheck(): Promise<void>;
}

/**
 * `ours`: the stored login if it is this manager's (issuer, client); `problem`: why such a
 * login cannot be used as it is (DPoP), or undefined. A login with a problem is loaded and
 * at once marked re-login required with it (the caller sees why); a recheck passes it over.
 */
export function createStoreReads(
  machine: Machine,
  store: TokenStore,
  ours: (stored: StoredTokens | undefined) => StoredTokens | undefined,
  problem: (stored: StoredTokens) => ReauthRequiredError | undefined,
): StoreReads {
  // Callers that arrive together share one read; the next caller reads again.
  const loads = createSingleFlight<void>();
  const rechecks = createSingleFlight<void>();
  return {
    load: () =>
      loads.run(async () => {
        const stored = ours(await store.load());
        const unusable = stored === undefined ? undefined : problem(stored);
        machine.apply({ type: "loaded", stored });
        if (unusable !== undefined) machine.apply({ type: "reauth", error: unusable, terminal: false, at: machine.monotonic() });
      }),
    recheck: () =>
      rechecks.run(async () => {
        // A store that throws at once is as unreadable as one that rejects.
        const stored = await Promise.resolve()
          .then(() => store.load())
          .then(
            (loaded) => {
              const login = ours(loaded);
              return login === undefined || problem(login) !== undefined ? undefined : login;
            },
            () => undefined,
          );
        const { wall, monotonic } = machine.now();
        machine.apply({ type: "rechecked", stored, at: monotonic, wallNow: wall });
      }),
  };
}

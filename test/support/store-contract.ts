/**
 * The store contract: what every TokenStore promises a token manager, as cases registered
 * inside a `describe` for one store (test/integration/store-contract.test.ts runs them
 * against memoryStore, fileStore, keyringStore on the Secret Service and on the kernel
 * keyring, and redisStore). A store is reached through a StoreUnderTest, so that a store
 * living in another process (the kernel keyring needs a session keyring) runs the same cases.
 * What only one store promises (file modes, keyring failure modes, Redis leases and
 * encryption) stays in that store's own test file.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { inspect } from "node:util";
import { TokenStoreError } from "../../src/errors.js";
import type { StoredTokens } from "../../src/types.js";

/** One store at one place; its operations reject like the store's own. */
export interface ContractStore {
  load(): Promise<StoredTokens | undefined>;
  save(tokens: StoredTokens): Promise<void>;
  clear(): Promise<void>;
  /** Three callers of `lock` at once, each holding it 10 ms: the order of their "in" and "out". */
  lockOrder(): Promise<string[]>;
}

export interface StoreUnderTest {
  /** The store at `place` (a fresh name per case); the same place again gives the same login. */
  open(place: string): ContractStore;
  /** Another process, connection or store object at the same place, when the store has one. */
  elsewhere?(place: string): ContractStore;
  /** How an error message names the place. */
  names(place: string): RegExp;
  /** Writes a raw value where the store reads its login (absent: the store holds objects). */
  writeRaw?(place: string, value: string | Uint8Array): Promise<void>;
  /** The raw value at the place, or undefined when nothing is there. */
  readRaw?(place: string): Promise<string | undefined>;
  /** Nothing of the store is left at the place (the login, and any probe it made). */
  nothingLeft?(place: string): Promise<void>;
  /** False where the backend itself refuses an empty value (the kernel keyring): "" is not tried. */
  readonly holdsEmptyValue?: boolean;
  /** Whether only a login's own fields are kept (false: the store keeps the object it was given). */
  readonly keepsOnlyKnownFields: boolean;
  /** "fifo": callers hold the lock in the order they called; "one-at-a-time": any order. */
  readonly lockOrder: "fifo" | "one-at-a-time";
  /** Checks after the lock was taken (a lock file where it belongs). */
  afterLock?(): Promise<void>;
  /** A limit on one value (keyrings): its size and the words its refusal uses. */
  readonly valueLimit?: { readonly bytes: number; readonly says: RegExp };
  /** Errors come from another process as name/reason/message (no class to check). */
  readonly remote?: boolean;
}

/** An error of a store in another process, as it crossed the process boundary. */
export class RemoteStoreError extends Error {
  constructor(
    readonly remoteName: string | undefined,
    readonly reason: string | undefined,
    message: string | undefined,
    readonly texts: readonly string[],
  ) {
    super(message);
  }
}

export const secrets = ["at-SECRET-access-c0n7", "rt-SECRET-refresh-7r4c"] as const;
export const contractTokens: StoredTokens = {
  version: 1,
  issuer: "https://issuer.example",
  clientId: "cli",
  accessToken: secrets[0],
  refreshToken: secrets[1],
  issuedAt: 1_700_000_000_000,
  expiresAt: 1_700_000_300_000,
  scope: "openid offline_access",
};

/** Values no store may take for a login, each told apart from "nothing stored". */
const corrupt: readonly (string | Uint8Array)[] = [
  `not json at all ${secrets[0]}`,
  `["${secrets[0]}"]`,
  JSON.stringify({ ...contractTokens, version: 2 }),
  JSON.stringify({ ...contractTokens, issuer: undefined }),
  JSON.stringify({ ...contractTokens, accessToken: 42 }),
  JSON.stringify({ ...contractTokens, expiresAt: secrets[1] }),
  JSON.stringify({ ...contractTokens, refreshToken: 1, accessToken: 2, scope: secrets[1] }),
  "",
  Uint8Array.from([0xff, 0xfe, 0x00]),
];

/** Registers the contract's cases for one store (call inside its `describe`). */
export function storeContract(store: StoreUnderTest): void {
  const seen: unknown[] = []; // every error, for the leak scan at the end
  let places = 0;
  const place = (what: string) => `${what}-${++places}`;
  const corruptHere = corrupt.filter((value) => value !== "" || store.holdsEmptyValue !== false);

  async function failure(promise: Promise<unknown>): Promise<{ reason?: string; message: string }> {
    const error = await promise.then(
      () => assert.fail("expected a TokenStoreError"),
      (e: unknown) => e,
    );
    seen.push(error);
    if (store.remote && error instanceof RemoteStoreError) {
      assert.equal(error.remoteName, "TokenStoreError", error.message);
      return { reason: error.reason, message: error.message };
    }
    assert.ok(error instanceof TokenStoreError, `not a TokenStoreError: ${inspect(error)}`);
    return error;
  }

  test("nothing stored is no login, and loading leaves nothing behind", async () => {
    const at = place("empty");
    assert.equal(await store.open(at).load(), undefined);
    await store.nothingLeft?.(at);
  });

  test("round trip; another store at the same place sees it, both ways", async (t) => {
    const at = place("round-trip");
    const here = store.open(at);
    await here.save(contractTokens);
    assert.deepEqual(await here.load(), contractTokens);
    assert.deepEqual(await store.open(at).load(), contractTokens, "another store object reads it too");
    if (store.elsewhere) {
      assert.deepEqual(await store.elsewhere(at).load(), contractTokens, "another process or connection sees it");
      const other = { ...contractTokens, accessToken: "at-from-elsewhere" };
      await store.elsewhere(at).save(other);
      assert.deepEqual(await here.load(), other, "and the other way round");
    }
    const rounds = 50;
    const started = performance.now();
    for (let i = 0; i < rounds; i++) {
      await here.save(contractTokens);
      await here.load();
    }
    t.diagnostic(`save + load ${((performance.now() - started) / rounds).toFixed(2)} ms (mean of ${rounds})`);
  });

  if (store.keepsOnlyKnownFields)
    test("only the login's own fields are kept", async () => {
      const at = place("extra");
      const withExtra = { ...contractTokens, idToken: "id-token-that-must-not-be-kept" } as StoredTokens;
      await store.open(at).save(withExtra);
      assert.deepEqual(await store.open(at).load(), contractTokens);
      const raw = await store.readRaw?.(at);
      if (store.readRaw) assert.ok(raw !== undefined && !raw.includes("id-token"), "nothing of the extra field is stored");
    });

  test("clear removes the login; clearing nothing is fine", async () => {
    const at = place("clear");
    const s = store.open(at);
    await s.save(contractTokens);
    await s.clear();
    assert.equal(await s.load(), undefined);
    if (store.readRaw) assert.equal(await store.readRaw(at), undefined, "nothing left at the place");
    await s.clear();
    await store.open(place("never-stored")).clear();
  });

  if (store.writeRaw)
    test("a corrupt value is a typed error naming the place, never echoing the value; a save replaces it", async () => {
      const at = place("corrupt");
      const s = store.open(at);
      for (const value of corruptHere) {
        await store.writeRaw!(at, value);
        const error = await failure(s.load());
        const label = typeof value === "string" ? value : "bytes that are not UTF-8";
        assert.equal(error.reason, "corrupt", label);
        assert.match(error.message, store.names(at), label);
        assert.match(error.message, /log in again/, label);
      }
      await s.save(contractTokens);
      assert.deepEqual(await s.load(), contractTokens, "a save replaced the corrupt value");
    });

  if (store.valueLimit)
    test("a login too large for one value is refused before writing", async () => {
      const at = place("too-large");
      const s = store.open(at);
      await s.save(contractTokens);
      const huge = { ...contractTokens, refreshToken: `${secrets[0]}${"x".repeat(store.valueLimit!.bytes)}` };
      const error = await failure(s.save(huge));
      assert.equal(error.reason, "too-large", error.message);
      assert.match(error.message, store.valueLimit!.says);
      assert.match(error.message, /fileStore/);
      assert.deepEqual(await s.load(), contractTokens, "the stored login is untouched");
    });

  if (store.valueLimit)
    test("an access token too large for one value is left out; the refresh token is kept", async () => {
      const at = place("big-access-token");
      const big = { ...contractTokens, accessToken: `${secrets[0]}${"x".repeat(store.valueLimit!.bytes)}` };
      await store.open(at).save(big);
      const { accessToken: _left, ...expected } = big;
      assert.deepEqual(await store.open(at).load(), expected);
    });

  test("lock: one holder at a time", async () => {
    const order = await store.open(place("lock")).lockOrder();
    if (store.lockOrder === "fifo") {
      assert.deepEqual(order, ["a in", "a out", "b in", "b out", "c in", "c out"]);
    } else {
      // Each "in" is followed by its own "out"; the callers may reach the queue in another order.
      assert.equal(order.length, 6, order.join(", "));
      for (let i = 0; i < order.length; i += 2) assert.equal(order[i + 1], order[i]!.replace(" in", " out"), order.join(", "));
      assert.deepEqual(order.filter((e) => e.endsWith(" in")).sort(), ["a in", "b in", "c in"]);
    }
    await store.afterLock?.();
  });

  test("no error carries token material", () => {
    if (store.writeRaw) assert.ok(seen.length >= corruptHere.length, `only ${seen.length} errors seen`);
    for (const error of seen) {
      const texts =
        error instanceof RemoteStoreError
          ? [error.message, ...error.texts]
          : [String(error), (error as Error).message, inspect(error, { depth: 10 })];
      for (const text of texts) {
        for (const secret of secrets) assert.ok(!text.includes(secret), `leaked in: ${text}`);
      }
    }
  });
}

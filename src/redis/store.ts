/**
 * redisStore: one login shared by every process that reaches one Redis, refreshed under a
 * lease, written fenced (a save cannot overwrite a login stored after it read the store).
 * What it guarantees on one Redis, under failover and on Cluster: docs/REDIS.md.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { TokenStoreError } from "../errors.js";
import { corrupt, parseStoredTokens, serializeStoredTokens } from "../stored-tokens.js";
import type { StoredTokens, TokenStore } from "../types.js";
import { aesGcm, plainText } from "./cipher.js";
import { createCommands } from "./command.js";
import { acquireLease, type Lease } from "./lease.js";
import { checkRedisStoreOptions, type RedisStoreOptions } from "./options.js";
import { LOAD, SAVE } from "./scripts.js";

/**
 * What a `lock(fn)` of a store holds while `fn` runs: its lease (none while Redis is down
 * under `fallback: "local"`) and the login version read under it, which a save must still
 * find (compare-and-set). Found through AsyncLocalStorage, so `load` and `save` called from
 * `fn` know the lease they run under without any change to the TokenStore interface.
 */
interface Hold {
  readonly lease: Lease | undefined;
  version: number | undefined;
  /** `lock(fn)` has returned: work `fn` left behind (a timer, a promise) runs under no hold. */
  ended: boolean;
}

/**
 * A token store in Redis, shared by a fleet of processes on any number of machines: the
 * login in one key, a lease beside it so that one process at a time refreshes (SET NX PX,
 * renewed while the refresh runs, released only by its holder), and fenced writes (each
 * stored login carries a version; a process whose lease ran out cannot overwrite a newer
 * login). On client credentials the fleet asks the identity provider for one token per
 * period; on rotating refresh tokens no refresh token is used twice. Takes an ioredis
 * client (an optional peer dependency); see docs/REDIS.md for what it guarantees.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import { createTokenManager } from "connect-oidc";
 * import { redisStore } from "connect-oidc/redis";
 *
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "billing-service",
 *   clientSecret: process.env.CLIENT_SECRET,
 *   grant: "client_credentials",
 *   store: redisStore({ client: new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379"), key: "billing:login" }),
 * });
 * ```
 */
export function redisStore(options: RedisStoreOptions): TokenStore {
  const settings = checkRedisStoreOptions(options);
  const { key } = settings;
  const where = `The Redis key "${key}"`;
  const leaseName = `the lease on Redis key "${key}"`;
  const commands = createCommands(options.client, key, settings.leaseKey, settings.timeoutMs);
  const cipher = options.encryptionKey === undefined ? plainText : aesGcm(options.encryptionKey, key);
  // One per store: a lock of another store (nested, or in fn's async work) is not this one's.
  const holds = new AsyncLocalStorage<Hold>();
  // The login this process last read from or wrote to Redis: what `fallback: "local"` goes on with.
  let lastSeen: StoredTokens | undefined;
  // Callers of this process queue here before asking Redis for the lease.
  let tail: Promise<unknown> = Promise.resolve();

  const currentHold = (): Hold | undefined => {
    const hold = holds.getStore();
    return hold?.ended ? undefined : hold;
  };

  /** True when the store goes on without Redis: `error` is Redis failing and the user opted in. */
  const fallingBack = (error: unknown): boolean => {
    if (settings.fallback !== "local" || !(error instanceof TokenStoreError) || error.reason !== "unavailable") return false;
    try {
      options.onFallback?.(error);
    } catch {
      // A listener's failure must not break token handling.
    }
    return true;
  };

  const write = async (value: string, what: "saving" | "clearing"): Promise<void> => {
    const hold = currentHold();
    const reply = await commands.run(`${what} the login`, SAVE, [
      hold?.lease?.token ?? "",
      hold?.version ?? "",
      value,
      what === "clearing" ? "clear" : "",
    ]);
    const [written, version] = reply as [number, number];
    if (written !== 1) {
      throw new TokenStoreError(
        "fenced",
        `${where} was written by another process after this one read it, while this process's lease ` +
          `had run out (it stalled for longer than leaseMs, ${settings.leaseMs} ms): ${what} refused, the newer login stands.`,
      );
    }
    if (hold !== undefined) hold.version = version;
  };

  return {
    async load() {
      const hold = currentHold();
      let reply: unknown;
      try {
        reply = await commands.run("reading the login", LOAD, [hold?.lease?.token ?? "", settings.leaseMs]);
      } catch (error) {
        if (fallingBack(error)) return lastSeen;
        throw error;
      }
      const [lease, version, value] = reply as [number, number, string | null];
      if (lease === 2) hold?.lease?.retaken();
      if (lease === 0) {
        // Another process holds the lease now: refreshing could use the refresh token it is using.
        throw new TokenStoreError(
          "fenced",
          `This process's hold of ${leaseName} ran out before it read the login (it stalled for longer ` +
            `than leaseMs, ${settings.leaseMs} ms) and another process holds it now: no refresh here; the next attempt waits for the lease.`,
        );
      }
      if (version < 0) throw corrupt(where, "it is not a hash");
      if (hold !== undefined) hold.version = version;
      const login = value === null ? undefined : parseStoredTokens(await cipher.open(value, where), where);
      lastSeen = login;
      return login;
    },

    async save(tokens) {
      try {
        await write(await cipher.seal(serializeStoredTokens(tokens)), "saving");
      } catch (error) {
        if (!fallingBack(error)) throw error;
      }
      lastSeen = tokens;
    },

    async clear() {
      try {
        await write("", "clearing");
      } catch (error) {
        if (!fallingBack(error)) throw error;
      }
      lastSeen = undefined;
    },

    lock<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      const run = tail.then(async () => {
        signal?.throwIfAborted();
        let lease: Lease | undefined;
        try {
          lease = await acquireLease(commands, settings, signal);
        } catch (error) {
          if (!fallingBack(error)) throw error;
        }
        const hold: Hold = { lease, version: undefined, ended: false };
        try {
          return await holds.run(hold, fn);
        } finally {
          hold.ended = true;
          await lease?.release();
        }
      });
      // The next caller of this process waits for this one, whatever its outcome.
      tail = run.catch(() => {});
      return run;
    },
  };
}

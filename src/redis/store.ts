/**
 * redisStore: one login shared by every process that reaches one Redis, refreshed under a
 * lease, written fenced (a save cannot overwrite a login stored after it read the store).
 * What it guarantees on one Redis, under failover and on Cluster: docs/REDIS.md.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { corruptLogin, TokenStoreError } from "../errors.js";
import { createLockQueue } from "../lock-queue.js";
import { parseStoredTokens, serializeStoredTokens } from "../stored-tokens.js";
import type { LockHold, StoredTokens, TokenStore } from "../types.js";
import { aesGcm, plainText } from "./cipher.js";
import { createCommands } from "./command.js";
import { acquireLease, type Lease, leaseTimeout } from "./lease.js";
import { checkRedisStoreOptions, type RedisStoreOptions } from "./options.js";
import { CONFIRM, LOAD, SAVE } from "./scripts.js";

/**
 * What a `lock(fn)` of a store holds while `fn` runs: its lease (none while Redis is down
 * under `fallback: "local"`) and the login version read under it, which a save must still
 * find (compare-and-set). Found through AsyncLocalStorage, so `load` and `save` called from
 * `fn` know the lease they run under; `fn` also gets it as a LockHold, to confirm the lease
 * right before the request to the identity provider.
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
  // The login this process last read from or wrote to Redis, and its version: what
  // `fallback: "local"` goes on with, and what a save without a lease is compared with.
  let lastSeen: StoredTokens | undefined;
  let lastVersion: number | undefined;
  // Callers of this process wait here before asking Redis for the lease.
  const queue = createLockQueue();

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

  const fenced = (what: string) =>
    new TokenStoreError(
      "fenced",
      `${where} was written by another process after this one read it, while this process's lease ` +
        `had run out (it stalled for longer than leaseMs, ${settings.leaseMs} ms) or Redis was unreachable: ${what} refused, the newer login stands.`,
    );

  /** The version now in Redis (a key that is not a hash counts as 0: a save replaces it). */
  const versionNow = async (): Promise<number> => {
    const [, version] = (await commands.run("reading the login's version", LOAD, ["", settings.leaseMs])) as [number, number];
    return Math.max(version, 0);
  };

  /** Writes `text` (undefined: removes the login), fenced; see SAVE in scripts.ts. */
  const write = async (text: string | undefined, what: "saving" | "clearing"): Promise<void> => {
    const hold = currentHold();
    // Without a lease (Redis was down, fallback "local") a save is compared with the version
    // this process last saw: if Redis runs it late, it cannot overwrite a login written since.
    const compareWith = hold?.version ?? (hold !== undefined && hold.lease === undefined ? (lastVersion ?? 0) : undefined);
    for (let attempt = 1; ; attempt += 1) {
      // Encryption binds the version the value is written as: it must be known before.
      const sealedFor = text !== undefined && cipher.bindsVersion ? (compareWith ?? (await versionNow())) + 1 : undefined;
      const value = text === undefined ? "" : await cipher.seal(text, sealedFor ?? 0);
      const reply = await commands.run(`${what} the login`, SAVE, [
        hold?.lease?.token ?? "",
        compareWith ?? "",
        value,
        text === undefined ? "clear" : "",
        sealedFor ?? "",
      ]);
      const [written, version] = reply as [number, number];
      if (written === 1) {
        if (hold !== undefined) hold.version = version;
        lastVersion = version;
        return;
      }
      // Unfenced (no lock, no version): only a write between versionNow() and this save refuses it.
      if (hold === undefined && compareWith === undefined && attempt < 3) continue;
      throw fenced(what);
    }
  };

  /** LockHold.confirm: the lease is still ours, right before the request to the identity provider. */
  const confirm = async (hold: Hold): Promise<void> => {
    if (hold.ended) throw fenced("confirming the lease after lock() returned");
    if (hold.lease === undefined) return; // Redis down, fallback "local": a lock within this process
    let reply: unknown;
    try {
      reply = await commands.run("confirming the lease", CONFIRM, [hold.lease.token, settings.leaseMs, hold.version ?? ""]);
    } catch (error) {
      if (fallingBack(error)) return;
      throw error;
    }
    if (reply === 2) hold.lease.retaken();
    if (reply === 0) {
      throw new TokenStoreError(
        "fenced",
        `This process's hold of ${leaseName} ran out after it read the login (it stalled for longer than leaseMs, ` +
          `${settings.leaseMs} ms), and another process holds it now or stored a newer login: this refresh is ` +
          `abandoned before its request to the identity provider, the newer login stands.`,
      );
    }
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
      if (version < 0) throw corruptLogin(where, "it is not a hash");
      if (hold !== undefined) hold.version = version;
      const login = value === null ? undefined : parseStoredTokens(await cipher.open(value, where, version), where);
      lastSeen = login;
      lastVersion = version;
      return login;
    },

    async save(tokens) {
      try {
        await write(serializeStoredTokens(tokens), "saving");
      } catch (error) {
        if (!fallingBack(error)) throw error;
      }
      lastSeen = tokens;
    },

    async clear() {
      try {
        await write(undefined, "clearing");
      } catch (error) {
        if (!fallingBack(error)) throw error;
      }
      lastSeen = undefined;
    },

    async lock<T>(fn: (hold?: LockHold) => Promise<T>, signal?: AbortSignal): Promise<T> {
      // One bound for the whole wait, in line behind this process's callers and for the lease.
      const started = performance.now();
      const wait = {
        signal,
        deadline: started + settings.lockTimeoutMs,
        timedOut: () => leaseTimeout(settings, performance.now() - started),
      };
      const leave = await queue.enter(signal, wait.deadline, wait.timedOut);
      try {
        let lease: Lease | undefined;
        try {
          lease = await acquireLease(commands, settings, wait);
        } catch (error) {
          if (!fallingBack(error)) throw error;
        }
        const hold: Hold = { lease, version: undefined, ended: false };
        try {
          return await holds.run(hold, () => fn({ confirm: () => confirm(hold) }));
        } finally {
          hold.ended = true;
          await lease?.release();
        }
      } finally {
        leave();
      }
    },
  };
}

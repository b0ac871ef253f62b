/**
 * The options of redisStore, checked at the door, with their defaults.
 */
import { ConfigurationError, type TokenStoreError } from "../errors.js";
import { checkDuration, checkFunction, checkString } from "../options.js";
import type { RedisClient } from "./command.js";

/**
 * Options of {@link redisStore}. Only `client` and `key` are required.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import { type RedisStoreOptions, redisStore } from "connect-oidc/redis";
 *
 * const options: RedisStoreOptions = {
 *   client: new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379"),
 *   key: "my-service:login",
 *   leaseMs: 15_000, // the longest pause a holder may take before others take over
 *   timeoutMs: 1_000, // a Redis that does not answer within 1 s counts as down
 * };
 * const store = redisStore(options);
 * ```
 */
export interface RedisStoreOptions {
  /** An ioredis client (`Redis` or `Cluster`), connected or connecting; the store never closes it. */
  readonly client: RedisClient;
  /**
   * The Redis key of the login (a hash). The lease lives beside it at `<key>:lease`. On Redis
   * Cluster the key needs a hash tag (`{my-service}:login`) so that both share a slot.
   */
  readonly key: string;
  /**
   * How long the lease outlives its holder's last renewal (renewed every third of it while a
   * refresh runs): a holder that is killed, or stalls longer than this, loses the lease to
   * the next process. Default 10 s; at least 100 ms.
   */
  readonly leaseMs?: number;
  /** Give up waiting for another process's lease after this long (TokenStoreError "lock-timeout"). Default 30 s. */
  readonly lockTimeoutMs?: number;
  /** Pause between attempts to take a lease another process holds (jittered ±50 %). Default 50 ms. */
  readonly retryMs?: number;
  /**
   * Each Redis call: no answer within this long is TokenStoreError "unavailable" (ioredis
   * would otherwise queue the command while it reconnects). Default 2 s.
   */
  readonly timeoutMs?: number;
  /**
   * Encrypt the login at rest: an AES-GCM `CryptoKey` (WebCrypto) or 16 or 32 random bytes.
   * Every process sharing the key needs the same one. Default: stored as JSON text.
   */
  readonly encryptionKey?: CryptoKey | Uint8Array;
  /**
   * While Redis does not answer: `"none"` (default) fails store calls with TokenStoreError
   * "unavailable" (the token in memory is still served until it expires); `"local"` lets
   * each process go on alone — the login it last read, its own refreshes, a lock within the
   * process only — and tells `onFallback` each time. Processes then refresh independently:
   * fine for client credentials, a risk for rotating refresh tokens (see docs/REDIS.md).
   */
  readonly fallback?: "none" | "local";
  /** Told, with the Redis error, each time the store goes on without Redis (`fallback: "local"`). Must not throw. */
  readonly onFallback?: (error: TokenStoreError) => void;
}

export interface RedisStoreSettings {
  readonly key: string;
  readonly leaseKey: string;
  readonly leaseMs: number;
  readonly lockTimeoutMs: number;
  readonly retryMs: number;
  readonly timeoutMs: number;
  readonly fallback: "none" | "local";
}

export function checkRedisStoreOptions(options: RedisStoreOptions): RedisStoreSettings {
  const name = "redisStore";
  if (typeof options !== "object" || options === null) throw new ConfigurationError(`${name}: options are required`);
  if (typeof (options.client as Partial<RedisClient> | undefined)?.eval !== "function") {
    throw new ConfigurationError(`${name}: \`client\` must be an ioredis client (a Redis or Cluster instance)`);
  }
  checkString(name, "key", options.key, true);
  if (options.client.isCluster === true && hashTag(options.key) === undefined) {
    throw new ConfigurationError(
      `${name}: on Redis Cluster \`key\` needs a hash tag, e.g. "{${options.key}}", so that the login and its lease share a slot`,
    );
  }
  checkDuration(name, "leaseMs", options.leaseMs, 100);
  checkDuration(name, "lockTimeoutMs", options.lockTimeoutMs, 0);
  checkDuration(name, "retryMs", options.retryMs, 1);
  checkDuration(name, "timeoutMs", options.timeoutMs, 1);
  const fallback = options.fallback ?? "none";
  if (fallback !== "none" && fallback !== "local") {
    throw new ConfigurationError(`${name}: \`fallback\` must be "none" or "local"`);
  }
  checkFunction(name, "onFallback", options.onFallback);
  return {
    key: options.key,
    leaseKey: `${options.key}:lease`,
    leaseMs: options.leaseMs ?? 10_000,
    lockTimeoutMs: options.lockTimeoutMs ?? 30_000,
    retryMs: options.retryMs ?? 50,
    timeoutMs: options.timeoutMs ?? 2_000,
    fallback,
  };
}

/** The key's Redis Cluster hash tag (the text in its first `{...}`, if not empty), else undefined. */
function hashTag(key: string): string | undefined {
  const open = key.indexOf("{");
  const close = open < 0 ? -1 : key.indexOf("}", open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

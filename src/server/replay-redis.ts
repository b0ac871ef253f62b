/**
 * A DPoP `jti` replay cache in Redis, for a fleet of servers: `SET key 1 NX EX ttl` is one
 * atomic first-use check, whichever server the replay reaches. Takes the same client as
 * connect-oidc/redis (ioredis `Redis` or `Cluster`: anything with `eval`); does not load ioredis.
 * A Redis that does not answer in time refuses the request as `unavailable` (fail closed).
 */
import { clampDelay } from "../clock.js";
import type { RedisClient } from "../redis/command.js";
import { ConfigurationError } from "../errors.js";
import type { ReplayCache } from "./types.js";

/**
 * Options of {@link redisReplayCache}.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import type { RedisReplayCacheOptions } from "connect-oidc/server";
 *
 * const options: RedisReplayCacheOptions = { client: new Redis(), prefix: "billing-api:jti:", timeoutMs: 500 };
 * ```
 */
export interface RedisReplayCacheOptions {
  /** An ioredis client (or anything with its `eval`: {@link connect-oidc/redis!RedisClient}). */
  readonly client: RedisClient;
  /** Key prefix. Default `"connect-oidc:dpop-jti:"`. */
  readonly prefix?: string;
  /** How long to wait for Redis, in ms. Default 1000. */
  readonly timeoutMs?: number;
}

const SET_NX = "return redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])";

/**
 * A replay cache shared by every server that uses the same Redis.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import { createTokenVerifier, redisReplayCache } from "connect-oidc/server";
 *
 * const verifier = createTokenVerifier({
 *   issuer: "https://login.example.com",
 *   audience: "https://api.example.com",
 *   dpop: { replayCache: redisReplayCache({ client: new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379") }) },
 * });
 * ```
 */
export function redisReplayCache(options: RedisReplayCacheOptions): ReplayCache {
  if (typeof options?.client?.eval !== "function") throw new ConfigurationError("redisReplayCache: `client` must be an ioredis client");
  const prefix = options.prefix ?? "connect-oidc:dpop-jti:";
  const timeoutMs = options.timeoutMs ?? 1000;
  return {
    async use(key, ttlSeconds) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis gave no answer within ${timeoutMs} ms`)), clampDelay(timeoutMs));
      });
      try {
        const answer = await Promise.race([options.client.eval(SET_NX, 1, prefix + key, Math.max(1, Math.ceil(ttlSeconds))), late]);
        return answer === "OK";
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

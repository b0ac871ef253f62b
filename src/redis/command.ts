/**
 * One Redis script call, bounded in time and turned into a TokenStoreError that names
 * Redis and the key. ioredis queues commands while it reconnects (by default for as long
 * as it retries): without a bound, a store call would wait that long.
 */
import { clampDelay } from "../clock.js";
import { TokenStoreError } from "../errors.js";

/**
 * What redisStore needs of a Redis client: `eval`. An ioredis `Redis` or `Cluster` instance
 * has it (ioredis 5 or 6); so does any client with the same call shape.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import type { RedisClient } from "connect-oidc/redis";
 *
 * const client: RedisClient = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
 * ```
 */
export interface RedisClient {
  eval(script: string, numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
  /** ioredis sets this on a `Cluster`: both keys of a store must then share a hash slot. */
  readonly isCluster?: boolean;
}

export interface Commands {
  /** Runs `script` with the login and lease keys; `what` names the operation in errors. */
  run(what: string, script: string, args: readonly (string | number)[]): Promise<unknown>;
}

export function createCommands(client: RedisClient, key: string, leaseKey: string, timeoutMs: number): Commands {
  return {
    async run(what, script, args) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(unavailable(key, what, `no answer within ${timeoutMs} ms`)), clampDelay(timeoutMs));
        timer.unref?.();
      });
      try {
        return await Promise.race([Promise.resolve().then(() => client.eval(script, 2, key, leaseKey, ...args)), late]);
      } catch (error) {
        if (error instanceof TokenStoreError) throw error;
        throw unavailable(key, what, "it failed", error);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

function unavailable(key: string, what: string, how: string, error?: unknown): TokenStoreError {
  return new TokenStoreError(
    "unavailable",
    `Redis is unreachable or failing: ${what} of key "${key}": ${how}. Check the Redis server and the ` +
      `client's connection. The token in memory is used until it expires; on client credentials, ` +
      `fallback: "local" lets each process refresh alone meanwhile (see docs/REDIS.md).`,
    error === undefined ? undefined : { cause: redisFailure(error) },
  );
}

/**
 * A token-free stand-in for a client's error: ioredis attaches the command and its
 * arguments (here: the login) to reply errors, so the original never becomes a cause.
 */
export function redisFailure(error: unknown): Error {
  const e = error as { name?: unknown; message?: unknown } | null;
  const name = typeof e?.name === "string" ? e.name : "Error";
  // Redis' own messages name the command and the problem, never an argument; capped all the same.
  const message = typeof e?.message === "string" ? e.message.slice(0, 200) : String(error).slice(0, 200);
  const failure = new Error(`${name}: ${message}`);
  failure.name = "RedisFailure";
  return failure;
}

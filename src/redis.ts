/**
 * Node-only: a token store in Redis for a fleet of processes on many machines, with a
 * lease so that one of them refreshes at a time and fenced writes. Takes an ioredis client
 * (an optional peer dependency: install `ioredis` to use this entry point); importing it
 * does not load ioredis. Guarantees and failure modes: docs/REDIS.md.
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
 *
 * @module connect-oidc/redis
 */
export { redisStore } from "./redis/store.js";
export type { RedisStoreOptions } from "./redis/options.js";
export type { RedisClient } from "./redis/command.js";

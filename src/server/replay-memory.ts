/**
 * A DPoP `jti` replay cache in this process's memory, bounded: entries leave when their time
 * is up, and when the cache is full the oldest one leaves first (a replay of that proof would
 * then pass while its `iat` is still in the window: size the cache for your request rate).
 */
import { ConfigurationError } from "../errors.js";
import type { ReplayCache } from "./types.js";

/**
 * Options of {@link memoryReplayCache}.
 *
 * @example
 * ```ts
 * import type { MemoryReplayCacheOptions } from "connect-oidc/server";
 *
 * const options: MemoryReplayCacheOptions = { maxEntries: 1_000_000 };
 * ```
 */
export interface MemoryReplayCacheOptions {
  /** Entries kept at most. Default 100000 (about 800 proofs a second with a 60 s window). */
  readonly maxEntries?: number;
  /** Wall clock, epoch ms. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * A replay cache for one server process.
 *
 * @example
 * ```ts
 * import { createTokenVerifier, memoryReplayCache } from "connect-oidc/server";
 *
 * const verifier = createTokenVerifier({
 *   issuer: "https://login.example.com",
 *   audience: "https://api.example.com",
 *   dpop: { replayCache: memoryReplayCache({ maxEntries: 500_000 }) },
 * });
 * ```
 */
export function memoryReplayCache(options: MemoryReplayCacheOptions = {}): ReplayCache {
  const maxEntries = options.maxEntries ?? 100_000;
  if (!(Number.isInteger(maxEntries) && maxEntries > 0))
    throw new ConfigurationError("memoryReplayCache: `maxEntries` must be a positive integer");
  const now = options.now ?? Date.now;
  // key → forget-at (epoch ms). Insertion order is close to expiry order: the TTL is the same for all.
  const seen = new Map<string, number>();

  const sweep = (at: number) => {
    for (const [key, forgetAt] of seen) {
      if (forgetAt > at && seen.size < maxEntries) break;
      seen.delete(key);
    }
  };

  return {
    use(key, ttlSeconds) {
      const at = now();
      const forgetAt = seen.get(key);
      if (forgetAt !== undefined && forgetAt > at) return false;
      if (forgetAt !== undefined) seen.delete(key);
      sweep(at);
      seen.set(key, at + ttlSeconds * 1000);
      return true;
    },
  };
}

/**
 * RFC 7662 introspection of opaque access tokens, through openid-client (loaded on first
 * use, so a verifier without introspection never loads it). Answers are cached by a hash of
 * the token — an active one until the token's `exp` (at most `maxCacheSeconds`), an inactive
 * one briefly — in a bounded map (least recently used dropped). Concurrent checks of one
 * token share one request.
 */
import { createHash } from "node:crypto";
import type * as oidc from "openid-client";
import type { IntrospectionOptions } from "./options.js";
import type { AccessTokenClaims } from "./types.js";

export type IntrospectionResult =
  | { readonly ok: true; readonly claims: AccessTokenClaims }
  | { readonly ok: false; readonly reason: "inactive" | "wrong-audience" | "wrong-issuer" | "expired" | "unavailable" };

export interface Introspector {
  check(token: string): Promise<IntrospectionResult>;
}

export interface IntrospectorOptions extends IntrospectionOptions {
  readonly issuer: string;
  readonly audience: readonly string[];
  readonly allowInsecureRequests: boolean;
  readonly clockToleranceSeconds: number;
  /** Wall clock, epoch ms. */
  readonly now: () => number;
}

interface Cached {
  readonly result: IntrospectionResult;
  /** Epoch ms. */
  readonly until: number;
}

export function createIntrospector(options: IntrospectorOptions): Introspector {
  const cacheSize = options.cacheSize ?? 10_000;
  const maxCacheMs = (options.maxCacheSeconds ?? 300) * 1000;
  const inactiveMs = (options.inactiveCacheSeconds ?? 30) * 1000;
  const cache = new Map<string, Cached>();
  const pending = new Map<string, Promise<IntrospectionResult>>();
  let config: Promise<oidc.Configuration> | undefined;

  const configuration = () => {
    config ??= (async () => {
      const lib = await import("openid-client");
      return lib.discovery(new URL(options.issuer), options.clientId, undefined, lib.ClientSecretBasic(options.clientSecret), {
        ...(options.allowInsecureRequests ? { execute: [lib.allowInsecureRequests] } : {}),
      });
    })().catch((error: unknown) => {
      config = undefined;
      throw error;
    });
    return config;
  };

  const judge = (answer: Record<string, unknown>): IntrospectionResult => {
    if (answer.active !== true) return { ok: false, reason: "inactive" };
    const claims = answer as AccessTokenClaims;
    const now = options.now() / 1000;
    if (typeof claims.exp === "number" && claims.exp + options.clockToleranceSeconds <= now) return { ok: false, reason: "expired" };
    if (claims.iss !== undefined && claims.iss !== options.issuer) return { ok: false, reason: "wrong-issuer" };
    const aud = claims.aud === undefined ? [] : typeof claims.aud === "string" ? [claims.aud] : claims.aud;
    // RFC 7662 makes aud optional; when the issuer says it, it must name this API.
    if (aud.length > 0 && !aud.some((a) => options.audience.includes(a))) return { ok: false, reason: "wrong-audience" };
    return { ok: true, claims };
  };

  const introspect = async (token: string): Promise<IntrospectionResult> => {
    try {
      const lib = await import("openid-client");
      const answer = await lib.tokenIntrospection(await configuration(), token);
      return judge(answer as Record<string, unknown>);
    } catch {
      // The issuer or the network, not the token: nothing about the token is cached.
      return { ok: false, reason: "unavailable" };
    }
  };

  const remember = (key: string, result: IntrospectionResult) => {
    if (result.ok === false && result.reason === "unavailable") return;
    const now = options.now();
    const exp = result.ok && typeof result.claims.exp === "number" ? result.claims.exp * 1000 : undefined;
    const until = result.ok ? Math.min(now + maxCacheMs, exp ?? now + maxCacheMs) : now + inactiveMs;
    if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string);
    cache.set(key, { result, until });
  };

  return {
    async check(token) {
      const key = createHash("sha256").update(token).digest("base64url");
      const cached = cache.get(key);
      if (cached && cached.until > options.now()) {
        cache.delete(key);
        cache.set(key, cached);
        return cached.result.ok ? judge({ ...cached.result.claims, active: true }) : cached.result;
      }
      if (cached) cache.delete(key);
      let answer = pending.get(key);
      if (!answer) {
        answer = introspect(token).finally(() => pending.delete(key));
        pending.set(key, answer);
        void answer.then((result) => remember(key, result));
      }
      return answer;
    },
  };
}

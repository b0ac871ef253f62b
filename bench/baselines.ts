/**
 * What users write or pick instead of connect-oidc, small and honest, for side-by-side rows:
 * - a fixed `authorization` header: the physical limit of bearer auth;
 * - a blocking refresh: refresh on the call path when less than the window remains, behind
 *   one mutex (most token libraries, and the original Go client);
 * - the same without the mutex: every caller that finds the token due refreshes it.
 */
import type { Interceptor } from "@connectrpc/connect";
import * as oidc from "openid-client";
import type { TokenEndpointResponse, TokenProvider } from "../src/index.js";

/** Sets one constant `authorization` header: no provider, no checks. */
export function fixedHeaderInterceptor(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => (req) => {
    req.header.set("authorization", value);
    return next(req);
  };
}

export interface BaselineOptions {
  readonly config: oidc.Configuration;
  readonly login: TokenEndpointResponse;
  /** Refresh when less than this remains. */
  readonly windowMs: number;
  /** One mutex around the refresh (the blocking baseline) or none (every caller refreshes). */
  readonly mutex: boolean;
  /** Counts the refreshes this baseline made, and their failures. */
  readonly stats?: { refreshes: number; failures: number };
}

/** A provider that refreshes on the call path, as most token libraries do. */
export function blockingProvider(options: BaselineOptions): TokenProvider {
  let token = options.login.access_token;
  let refreshToken = options.login.refresh_token;
  let expiresAt = Date.now() + (options.login.expires_in ?? 300) * 1000;
  let tail: Promise<unknown> = Promise.resolve();
  const due = (rejected?: string) => rejected === token || Date.now() >= expiresAt - options.windowMs;
  const refresh = async () => {
    if (options.stats) options.stats.refreshes += 1;
    try {
      const r = await oidc.refreshTokenGrant(options.config, refreshToken!);
      token = r.access_token;
      refreshToken = r.refresh_token ?? refreshToken;
      expiresAt = Date.now() + (r.expires_in ?? 300) * 1000;
    } catch (error) {
      if (options.stats) options.stats.failures += 1;
      throw error;
    }
  };
  return {
    async getAccessToken(request = {}) {
      if (!due(request.rejected)) return token;
      if (!options.mutex) {
        await refresh();
        return token;
      }
      const rejected = request.rejected;
      const run = tail.then(() => (due(rejected) ? refresh() : undefined));
      tail = run.catch(() => {});
      await run;
      return token;
    },
  };
}

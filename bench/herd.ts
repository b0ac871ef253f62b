/**
 * Row 3: many callers need a new token at the same moment — 1,000 concurrent calls at
 * expiry, and 100 concurrent refusals of one token. Token-endpoint requests, ours against
 * the blocking refresh without single-flight (every caller that finds the token due
 * refreshes it). Real calls to a real server; the real IdP counts the requests.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { EchoService } from "../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, memoryStore, type TokenProvider } from "../src/index.js";
import type { Idp } from "../test/support/idp.js";
import { createManualClock } from "../test/support/manual-clock.js";
import { startServer } from "../test/support/server.js";
import { blockingProvider } from "./baselines.js";
import type { Row } from "./rows.js";

const HOUR = 3600_000;

export async function herdRows(idp: Idp): Promise<Row[]> {
  const server = await startServer({ idp, http2: true });
  const refreshes = () => idp.stats.byGrantType.refresh_token;
  const calls = async (tokens: TokenProvider, n: number) => {
    const client = createClient(
      EchoService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2", interceptors: [createAuthInterceptor(tokens)] }),
    );
    const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => client.say({ text: `c${i}` })));
    return results.filter((r) => r.status === "rejected").length;
  };
  const count = async (fn: () => Promise<number>) => {
    const before = refreshes();
    const failed = await fn();
    return { requests: refreshes() - before, failed };
  };
  try {
    // 1,000 calls at expiry: a login stored two hours ago, on the manager's clock.
    const ours = await count(async () => calls(await expiredManager(idp), 1000));
    const naive = await count(async () => calls(naiveBaseline(idp, await idp.login(), { expired: true }), 1000));
    // 100 refusals: the server revokes the token all 100 calls carry.
    const oursRefused = await count(async () => {
      const m = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, clock: createManualClock() });
      await m.setTokens(await idp.login());
      server.revoke(await m.getAccessToken());
      return calls(m, 100);
    });
    const naiveRefused = await count(async () => {
      const login = await idp.login();
      server.revoke(login.access_token);
      return calls(naiveBaseline(idp, login, { expired: false }), 100);
    });
    return [
      row("3. 1,000 concurrent calls at expiry", ours, naive),
      row("3. 100 concurrent refusals of one token", oursRefused, naiveRefused),
    ];
  } finally {
    await server.close();
  }
}

function row(name: string, ours: { requests: number; failed: number }, naive: { requests: number; failed: number }): Row {
  return {
    name: `${name}: token-endpoint requests (failed calls)`,
    ours: `${ours.requests} (${ours.failed})`,
    baseline: `${naive.requests} (${naive.failed})`,
    target: "exactly 1, 0 failed",
    met: ours.requests === 1 && ours.failed === 0,
  };
}

async function expiredManager(idp: Idp) {
  const store = memoryStore();
  const then = createManualClock();
  const seed = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, clock: then, store });
  await seed.setTokens(await idp.login());
  seed.close();
  return createTokenManager({
    issuer: idp.issuer,
    clientId: idp.clientId,
    allowInsecureRequests: true,
    clock: createManualClock(then.now() + 2 * HOUR),
    store,
  });
}

function naiveBaseline(idp: Idp, login: Awaited<ReturnType<Idp["login"]>>, { expired }: { expired: boolean }): TokenProvider {
  let provider: TokenProvider | undefined;
  return {
    async getAccessToken(request) {
      provider ??= blockingProvider({
        config: await idp.cliConfig(),
        login: expired ? { ...login, expires_in: -1 } : login,
        windowMs: 0,
        mutex: false,
      });
      return provider.getAccessToken(request);
    },
  };
}

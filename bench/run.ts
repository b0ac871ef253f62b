/**
 * Benchmarks (`npm run bench`): the numbers the core promises, measured against a
 * real oidc-provider and a real connect-node server on loopback.
 *  1. token-endpoint requests for 200 concurrent calls at expiry
 *  2. token-endpoint requests for 100 concurrent 401s
 *  3. caller latency across a proactive refresh with an 800 ms token endpoint
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { EchoService } from "../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, memoryStore, type TokenEvent, type TokenProvider } from "../src/index.js";
import { startIdp } from "../test/support/idp.js";
import { createManualClock } from "../test/support/manual-clock.js";
import { startServer } from "../test/support/server.js";

const HOUR = 3600_000;
const idp = await startIdp({ accessTokenTtl: 3600 });
const server = await startServer({ idp, http2: false });
const base = { issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true } as const;
const clientFor = (tokens: TokenProvider) =>
  createClient(
    EchoService,
    createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(tokens)] }),
  );
const refreshes = () => idp.stats.byGrantType.refresh_token;
const results: Record<string, string | number> = {};

{
  // 1. A login stored two hours ago (on the manager's clock): 200 calls at once.
  const store = memoryStore();
  const then = createManualClock();
  const seed = createTokenManager({ ...base, clock: then, store });
  await seed.setTokens(await idp.login());
  seed.close();
  const late = createTokenManager({ ...base, clock: createManualClock(then.now() + 2 * HOUR), store });
  const before = refreshes();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 200 }, (_, i) => clientFor(late).say({ text: `e${i}` })));
  results["200 concurrent calls at expiry: token-endpoint requests"] = refreshes() - before;
  results["200 concurrent calls at expiry: wall time (ms)"] = Math.round(performance.now() - t0);
  late.close();
}

{
  // 2. The server revokes the current token: 100 calls at once all get a 401.
  const manager = createTokenManager({ ...base, clock: createManualClock() });
  const login = await idp.login();
  await manager.setTokens(login);
  server.revoke(login.access_token);
  server.resetStats();
  const before = refreshes();
  await Promise.all(Array.from({ length: 100 }, (_, i) => clientFor(manager).say({ text: `r${i}` })));
  results["100 concurrent 401s: token-endpoint requests"] = refreshes() - before;
  results["100 concurrent 401s: server requests (100 first tries + retries)"] = server.stats.requests.length;
  manager.close();
}

{
  // 3. Real time, 6 s tokens, an 800 ms token endpoint: calls every 10 ms for 12 s.
  const ttlIdp = await startIdp({ accessTokenTtl: 6 });
  const ttlServer = await startServer({ idp: ttlIdp, http2: false });
  const events: TokenEvent[] = [];
  const manager = createTokenManager({
    issuer: ttlIdp.issuer,
    clientId: ttlIdp.clientId,
    allowInsecureRequests: true,
    onEvent: (e) => events.push(e),
  });
  await manager.setTokens(await ttlIdp.login());
  ttlIdp.setTokenLatency(800);
  const client = createClient(
    EchoService,
    createConnectTransport({ baseUrl: ttlServer.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(manager)] }),
  );
  const tokenLatencies: number[] = [];
  const callLatencies: number[] = [];
  let failures = 0;
  const end = Date.now() + 12_000;
  while (Date.now() < end) {
    const t0 = performance.now();
    await manager.getAccessToken();
    tokenLatencies.push(performance.now() - t0);
    const t1 = performance.now();
    try {
      await client.say({ text: "tick" });
    } catch {
      failures += 1;
    }
    callLatencies.push(performance.now() - t1);
    await new Promise((r) => setTimeout(r, 10));
  }
  const pct = (xs: number[], p: number) =>
    [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!.toFixed(2);
  const reasons = events.filter((e) => e.type === "refreshed").map((e) => (e.type === "refreshed" ? e.reason : ""));
  results["800 ms IdP, 12 s of calls: calls"] = callLatencies.length;
  results["800 ms IdP: refreshes (reasons)"] = `${reasons.length} (${[...new Set(reasons)].join(", ")})`;
  results["800 ms IdP: getAccessToken latency p50 / p99 / max (ms)"] =
    `${pct(tokenLatencies, 50)} / ${pct(tokenLatencies, 99)} / ${Math.max(...tokenLatencies).toFixed(2)}`;
  results["800 ms IdP: whole call latency p50 / p99 / max (ms)"] =
    `${pct(callLatencies, 50)} / ${pct(callLatencies, 99)} / ${Math.max(...callLatencies).toFixed(2)}`;
  results["800 ms IdP: failed calls"] = failures;
  manager.close();
  await ttlServer.close();
  await ttlIdp.close();
}

{
  // 4. The fast path: a valid token, no I/O. Calls per second, and heap growth over
  //    500 refresh cycles (manual clock) plus 200k calls with an AbortSignal each.
  const clock = createManualClock();
  const manager = createTokenManager({ ...base, clock });
  await manager.setTokens(await idp.login());
  const n = 1_000_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1) await manager.getAccessToken();
  results["fast path: getAccessToken calls per second"] = Math.round(n / ((performance.now() - t0) / 1000));
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const signal = new AbortController().signal;
  for (let cycle = 0; cycle < 500; cycle += 1) {
    await clock.advance(HOUR); // expired: the next call refreshes at the real IdP
    for (let i = 0; i < 400; i += 1) await manager.getAccessToken({ signal });
  }
  gc?.();
  const grown = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024;
  results[`heap growth after 500 refreshes + 200k calls (MiB${gc ? "" : ", no --expose-gc: rough"})`] = grown.toFixed(2);
  manager.close();
}

await server.close();
await idp.close();
const width = Math.max(...Object.keys(results).map((k) => k.length));
for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(width)}  ${v}`);

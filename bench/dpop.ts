/**
 * Row 9: what DPoP (RFC 9449) costs a call, against bearer, measured side by side in one run:
 * loopback unary calls over HTTP/2 at concurrency 1 and 32, alternating the two in rounds so
 * drift on a shared machine hits both. DPoP: a token manager with `dpop: true` (a fresh ES256
 * proof signed for every call, the server's nonce) against a server that verifies every proof
 * (jose: signature, thumbprint, ath, htm/htu, iat, jti replay cache, nonce). Bearer: the same
 * login flow without DPoP against the same server in bearer mode. So the ratio is what a user
 * pays end to end — proof signing in the client and proof checking in the server, both on
 * this machine's CPUs. Then each half alone: `dpop.proof()` per call (the client), and the
 * test server's jose check of one proof (the server).
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as oidc from "openid-client";
import { EchoService } from "../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, type TokenManager } from "../src/index.js";
import { createDpopVerifier } from "../test/support/dpop-verify.js";
import { startIdp } from "../test/support/idp.js";
import { startServer, type TestServer } from "../test/support/server.js";
import { run } from "./overhead.js";
import { latencyRows, type Row, ratio } from "./rows.js";

export async function dpopRows(): Promise<Row[]> {
  const idp = await startIdp({ accessTokenTtl: 3600, dpop: { requireNonce: true } });
  const servers: TestServer[] = [];
  const managers: TokenManager[] = [];
  const settings = { issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true };
  try {
    const bearerServer = await startServer({ idp, http2: true });
    const dpopServer = await startServer({ idp, http2: true, dpop: { requireNonce: true } });
    servers.push(bearerServer, dpopServer);

    const bearer = createTokenManager(settings);
    managers.push(bearer);
    await bearer.setTokens(await idp.login());

    // A DPoP login bound to a key made here, as the login helpers make it (ES256, extractable).
    const dpop = createTokenManager({ ...settings, dpop: true });
    managers.push(dpop);
    const keyPair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const login = await idp.login({ dpop: oidc.getDPoPHandle(await idp.cliConfig(), keyPair) });
    await dpop.setTokens({ ...login, dpopKey: { algorithm: "ES256", keyPair } });

    const client = (server: TestServer, manager: TokenManager) =>
      createClient(
        EchoService,
        createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2", interceptors: [createAuthInterceptor(manager)] }),
      );
    const sides = { dpop: client(dpopServer, dpop), bearer: client(bearerServer, bearer) };

    const rows: Row[] = [];
    for (const concurrency of [1, 32]) {
      const perRound = concurrency === 1 ? 300 : 1200;
      const latency = { dpop: [] as number[], bearer: [] as number[] };
      const busyMs = { dpop: 0, bearer: 0 };
      let refused = 0;
      for (let round = 0; round < 7; round += 1) {
        const order = round % 2 === 0 ? (["dpop", "bearer"] as const) : (["bearer", "dpop"] as const);
        for (const side of order) {
          for (const server of servers) server.resetStats();
          const t0 = performance.now();
          const samples = await run(sides[side], perRound, concurrency);
          if (round === 0) continue; // warm-up (the first DPoP call also learns the nonce)
          busyMs[side] += performance.now() - t0;
          for (const server of servers) refused += server.stats.requests.filter((r) => r.auth !== "accepted").length;
          latency[side].push(...samples);
        }
      }
      if (refused > 0) throw new Error(`bench 9: the servers refused ${refused} calls after the warm-up`);
      rows.push(
        ...latencyRows(
          `9. DPoP vs bearer, unary over HTTP/2, concurrency ${concurrency}`,
          { latency: latency.dpop, busyMs: busyMs.dpop },
          { latency: latency.bearer, busyMs: busyMs.bearer },
        ),
      );
    }

    // The proof alone: µs per dpop.proof(), against getAccessToken() with a fresh token.
    const prover = dpop.dpop;
    if (!prover) throw new Error("bench 9: a token manager with dpop has no prover");
    const accessToken = await dpop.getAccessToken();
    const url = `${dpopServer.baseUrl}/connectoidc.test.v1.EchoService/Say`;
    const timed = async (n: number, fn: () => Promise<unknown>) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i += 1) await fn();
      return ((performance.now() - t0) * 1000) / n;
    };
    const sign = () => prover.proof({ method: "POST", url, accessToken });
    await timed(500, sign); // warm-up
    const proofUs = await timed(5000, sign);
    const tokenUs = await timed(5000, () => dpop.getAccessToken());
    rows.push({
      name: "9. one DPoP proof, dpop.proof() (µs per call; baseline getAccessToken())",
      ours: proofUs.toFixed(1),
      baseline: tokenUs.toFixed(1),
      ratio: ratio(proofUs, tokenUs),
      target: "—",
    });

    // The server's half: the jose check of one proof (fresh proofs, each checked once), µs.
    const jkt = JSON.parse(Buffer.from(accessToken.split(".")[1] ?? "", "base64url").toString()).cnf?.jkt as string | undefined;
    const verifier = createDpopVerifier();
    const proofs = await Promise.all(Array.from({ length: 3000 }, sign));
    let checked = 0;
    const checkUs = await timed(proofs.length, async () => {
      const result = await verifier.verify({ proof: proofs[checked++], accessToken, boundJkt: jkt, method: "POST", url });
      if (!result.ok) throw new Error(`bench 9: proof refused (${result.reason})`);
    });
    rows.push({
      name: "9. the server's check of one proof (jose, µs per call; baseline getAccessToken())",
      ours: checkUs.toFixed(1),
      baseline: tokenUs.toFixed(1),
      ratio: ratio(checkUs, tokenUs),
      target: "—",
    });
    return rows;
  } finally {
    for (const manager of managers) manager.close();
    for (const server of servers) await server.close();
    await idp.close();
  }
}

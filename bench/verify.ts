import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { type Client, type ConnectRouter, createClient, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, jwtVerify } from "jose";
import { EchoService } from "../gen/connectoidc/test/v1/echo_pb.js";
import { createTokenVerifier } from "../src/server.js";
import { startTestIdentityProvider, startTestServer, type TestIdentityProvider, type TestServer } from "../src/testing.js";
import { createProofSigner } from "../test/support/dpop-proof.js";
import { latencyRows, percentile, type Row, ratio } from "./rows.js";

const SAY = "/connectoidc.test.v1.EchoService/Say";
const routes = (router: ConnectRouter) => router.service(EchoService, { say: (req) => ({ text: req.text }) });

/** Wall and CPU (this process, every thread: WebCrypto runs in libuv's pool) µs per call of `fn` over `n` calls in a row. */
async function microseconds(n: number, fn: (i: number) => Promise<unknown>): Promise<{ readonly wall: number; readonly cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1) await fn(i);
  const used = process.cpuUsage(c0);
  return { wall: ((performance.now() - t0) * 1000) / n, cpu: (used.user + used.system) / n };
}

interface Alternated {
  readonly wall: { readonly ours: number; readonly floor: number };
  readonly cpu: { readonly ours: number; readonly floor: number };
}

/** Medians of per-round µs/call of two sides, alternating which goes first. */
async function alternate(
  rounds: number,
  n: number,
  ours: (i: number) => Promise<unknown>,
  floor: (i: number) => Promise<unknown>,
): Promise<Alternated> {
  const wall = { ours: [] as number[], floor: [] as number[] };
  const cpu = { ours: [] as number[], floor: [] as number[] };
  for (let round = 0; round < rounds; round += 1) {
    const first = round % 2 === 0;
    const a = await microseconds(n, first ? ours : floor);
    const b = await microseconds(n, first ? floor : ours);
    if (round === 0) continue; // warm-up
    const [o, f] = first ? [a, b] : [b, a];
    wall.ours.push(o.wall);
    wall.floor.push(f.wall);
    cpu.ours.push(o.cpu);
    cpu.floor.push(f.cpu);
  }
  const median = (side: { ours: number[]; floor: number[] }) => ({ ours: percentile(side.ours, 50), floor: percentile(side.floor, 50) });
  return { wall: median(wall), cpu: median(cpu) };
}

async function bearerRows(idp: TestIdentityProvider, token: string): Promise<Row[]> {
  const url = `http://api.example${SAY}`;
  const verifier = createTokenVerifier({ issuer: idp.issuer, audience: idp.audience, jwksUri: idp.jwksUri, allowInsecureRequests: true });
  const jwks = createRemoteJWKSet(new URL(idp.jwksUri));
  const checks = { issuer: idp.issuer, audience: idp.audience, typ: "at+jwt", clockTolerance: 5 };
  const ours = async () => {
    if (!(await verifier.verify({ authorization: `Bearer ${token}`, method: "POST", url })).ok) throw new Error("bench 10: refused");
  };
  const floor = () => jwtVerify(token, jwks, checks);
  const measured = await alternate(11, 1500, ours, floor);
  return [
    {
      name: "10. bearer verification, key set cached: CPU µs per call (baseline jose jwtVerify alone)",
      ours: measured.cpu.ours.toFixed(1),
      baseline: measured.cpu.floor.toFixed(1),
      ratio: ratio(measured.cpu.ours, measured.cpu.floor),
      target: "≤ 1.20×",
      met: measured.cpu.ours / measured.cpu.floor <= 1.2,
    },
    {
      name: "10. the same, wall µs per call",
      ours: measured.wall.ours.toFixed(1),
      baseline: measured.wall.floor.toFixed(1),
      ratio: ratio(measured.wall.ours, measured.wall.floor),
      target: "—",
    },
  ];
}

async function dpopRows(idp: TestIdentityProvider): Promise<Row[]> {
  const login = await idp.login({ dpop: true });
  const token = login.access_token;
  const url = `http://api.example${SAY}`;
  const signer = await createProofSigner(login.dpopKey!.keyPair);
  const verifier = createTokenVerifier({
    issuer: idp.issuer,
    audience: idp.audience,
    jwksUri: idp.jwksUri,
    allowInsecureRequests: true,
    dpop: {},
  });
  const jwks = createRemoteJWKSet(new URL(idp.jwksUri));
  const checks = { issuer: idp.issuer, audience: idp.audience, typ: "at+jwt", clockTolerance: 5 };
  const n = 1000;
  const rounds = 11;
  // Fresh proofs, each verified once by each side (the verifier's replay cache sees every jti once).
  const proofs = await Promise.all(Array.from({ length: n * rounds }, () => signer.sign({ htm: "POST", htu: url, accessToken: token })));
  let round = 0;
  const ours = async (i: number) => {
    const result = await verifier.verify({ authorization: `DPoP ${token}`, dpop: proofs[round * n + i], method: "POST", url });
    if (!result.ok) throw new Error(`bench 10: proof refused (${result.reason})`);
    if (i === n - 1) round += 1;
  };
  let floorRound = 0;
  const floor = async (i: number) => {
    await jwtVerify(token, jwks, checks);
    const { protectedHeader } = await jwtVerify(proofs[floorRound * n + i]!, EmbeddedJWK, { typ: "dpop+jwt" });
    await calculateJwkThumbprint(protectedHeader.jwk!);
    if (i === n - 1) floorRound += 1;
  };
  const measured = await alternate(rounds, n, ours, floor);
  return [
    {
      name: "10. DPoP verification per call, token + fresh proof: CPU ms (baseline jose alone: two jwtVerify + thumbprint)",
      ours: (measured.cpu.ours / 1000).toFixed(3),
      baseline: (measured.cpu.floor / 1000).toFixed(3),
      ratio: ratio(measured.cpu.ours, measured.cpu.floor),
      target: "≤ 0.300 ms",
      met: measured.cpu.ours / 1000 <= 0.3,
    },
    {
      name: "10. the same, wall ms per call",
      ours: (measured.wall.ours / 1000).toFixed(3),
      baseline: (measured.wall.floor / 1000).toFixed(3),
      ratio: ratio(measured.wall.ours, measured.wall.floor),
      target: "—",
    },
  ];
}

/** An open connect-node server (no authentication) with the same routes. */
async function startOpenServer(): Promise<{ readonly baseUrl: string; close(): Promise<void> }> {
  const server = http2.createServer(connectNodeAdapter({ routes }));
  const sessions = new Set<http2.Http2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.destroy();
      }),
  };
}

const headerInterceptor =
  (token: string | undefined): Interceptor =>
  (next) =>
  (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };

function echoClient(baseUrl: string, httpVersion: "1.1" | "2", token: string | undefined): Client<typeof EchoService> {
  return createClient(EchoService, createConnectTransport({ baseUrl, httpVersion, interceptors: [headerInterceptor(token)] }));
}

async function throughputRows(idp: TestIdentityProvider, token: string): Promise<Row[]> {
  const rows: Row[] = [];
  for (const earlyRefusal of [true, false]) {
    const verified = await startTestServer({ identityProvider: idp, http2: true, earlyRefusal, routes });
    const open = await startOpenServer();
    try {
      const sides = { verified: echoClient(verified.baseUrl, "2", token), open: echoClient(open.baseUrl, "2", token) };
      const latency = { verified: [] as number[], open: [] as number[] };
      const busyMs = { verified: 0, open: 0 };
      const concurrency = 32;
      for (let round = 0; round < 7; round += 1) {
        for (const side of round % 2 === 0 ? (["verified", "open"] as const) : (["open", "verified"] as const)) {
          const t0 = performance.now();
          const samples = await calls(sides[side], 1500, concurrency, () => ({ text: "bench" }));
          if (round === 0) continue;
          busyMs[side] += performance.now() - t0;
          latency[side].push(...samples);
        }
      }
      const how = earlyRefusal ? "early wrapper + interceptor" : "interceptor only";
      rows.push(
        ...latencyRows(
          `10. verified unary server (${how}) vs an open one, HTTP/2, concurrency ${concurrency}`,
          { latency: latency.verified, busyMs: busyMs.verified },
          { latency: latency.open, busyMs: busyMs.open },
        ),
      );
    } finally {
      await verified.close();
      await open.close();
    }
  }
  return rows;
}

/** `total` calls, `concurrency` at a time; each call's latency (ms). Errors are answers here: a refusal counts. */
async function calls(
  client: Client<typeof EchoService>,
  total: number,
  concurrency: number,
  message: () => { text: string; payload?: Uint8Array },
  expect: "ok" | "refused" = "ok",
): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        next += 1;
        const t0 = performance.now();
        const outcome = await client.say(message()).then(
          () => "ok",
          () => "refused",
        );
        if (outcome !== expect) throw new Error(`bench 10: a call was ${outcome}, expected ${expect}`);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return latencies;
}

/** Server and client CPU (ms) and wall time per 1 MiB call for each side. */
async function largeRequestRows(idp: TestIdentityProvider, token: string): Promise<Row[]> {
  const payload = new Uint8Array(1024 * 1024).fill(7);
  const rows: Row[] = [];
  for (const httpVersion of ["1.1", "2"] as const) {
    const servers: TestServer[] = [];
    try {
      for (const earlyRefusal of [true, false])
        servers.push(await startTestServer({ identityProvider: idp, http2: httpVersion === "2", earlyRefusal, routes }));
      const n = 60;
      const measure = async (server: TestServer, withToken: boolean) => {
        const client = echoClient(server.baseUrl, httpVersion, withToken ? token : undefined);
        const wall: number[] = [];
        const cpu: number[] = [];
        for (let round = 0; round < 5; round += 1) {
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          await calls(client, n, 4, () => ({ text: "big", payload }), withToken ? "ok" : "refused");
          const used = process.cpuUsage(c0);
          if (round === 0) continue;
          wall.push((performance.now() - t0) / n);
          cpu.push((used.user + used.system) / 1000 / n);
        }
        return { wall: percentile(wall, 50), cpu: percentile(cpu, 50) };
      };
      const [early, late] = servers as [TestServer, TestServer];
      // Alternate accept/refuse per server so drift hits both.
      const accepted = await measure(early, true);
      const refusedEarly = await measure(early, false);
      const refusedLate = await measure(late, false);
      const acceptedAgain = await measure(late, true);
      const acceptedCpu = (accepted.cpu + acceptedAgain.cpu) / 2;
      const acceptedWall = (accepted.wall + acceptedAgain.wall) / 2;
      const proto = httpVersion === "2" ? "h2c" : "HTTP/1.1";
      for (const [label, side] of [
        ["early-refusal wrapper", refusedEarly],
        ["interceptor only", refusedLate],
      ] as const) {
        rows.push({
          name: `10. 1 MiB request without a token, refused (${label}, ${proto}): CPU ms per call (client + server; baseline: accepted with a token)`,
          ours: side.cpu.toFixed(2),
          baseline: acceptedCpu.toFixed(2),
          ratio: ratio(side.cpu, acceptedCpu),
          target: "—",
        });
        rows.push({
          name: `10. the same, wall ms per call (concurrency 4)`,
          ours: side.wall.toFixed(2),
          baseline: acceptedWall.toFixed(2),
          ratio: ratio(side.wall, acceptedWall),
          target: "—",
        });
      }
    } finally {
      for (const server of servers) await server.close();
    }
  }
  return rows;
}

export async function verifyRows(): Promise<Row[]> {
  const idp = await startTestIdentityProvider({ accessTokenTtl: 3600 });
  try {
    const { access_token: token } = await idp.login();
    const bearer = await bearerRows(idp, token);
    const dpop = await dpopRows(idp);
    // CPU per DPoP call ÷ CPU per bearer call, both ours, same run: less moved by the machine's load.
    const bearerCpuUs = Number(bearer[0]!.ours);
    const dpopCpuUs = Number(dpop[0]!.ours) * 1000;
    const relative: Row = {
      name: "10. DPoP verification ÷ bearer verification, CPU, both connect-oidc (same run)",
      ours: `${dpopCpuUs.toFixed(0)} µs`,
      baseline: `${bearerCpuUs.toFixed(0)} µs`,
      ratio: ratio(dpopCpuUs, bearerCpuUs),
      target: "—",
    };
    return [...bearer, ...dpop, relative, ...(await throughputRows(idp, token)), ...(await largeRequestRows(idp, token))];
  } finally {
    await idp.close();
  }
}

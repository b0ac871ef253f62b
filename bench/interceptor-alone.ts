/**
 * Row 1 (in-process): what the interceptor alone costs a unary call, against a fixed-header
 * interceptor, with `next` answering at once (no transport, no network): the process's CPU
 * time (user + system) per call, which other processes on a shared machine move far less
 * than wall time. Each call gets a fresh request whose headers are made as the Connect
 * transport makes them, on both sides. Rounds alternate the sides so drift hits both.
 *
 * It runs in a process of its own (`interceptorAloneRowsInChild`): beside the bench's identity
 * provider and servers, every figure on both sides was 2 to 10 times higher (the fixed header
 * itself 3 µs with an idle IdP in the process, 16 µs in the full bench, against 1.5 µs alone:
 * the process's CPU time counts V8's collector threads, whose work grows with the heap), and
 * the difference grew with it.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Interceptor, UnaryRequest, UnaryResponse } from "@connectrpc/connect";
import { EchoService } from "../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, memoryStore, type TokenProvider } from "../src/index.js";
import { fixedHeaderInterceptor } from "./baselines.js";
import type { Row } from "./rows.js";

const CALLS_PER_ROUND = 100_000;
const ROUNDS = 7;

/** A provider whose token is always at hand: `current()` answers, `getAccessToken()` too. */
export function providerWithCurrent(token: string): TokenProvider {
  return { current: () => token, getAccessToken: async () => token, accepted: () => {} };
}

/**
 * The rows: ours with a provider that has `current()` (the target: within 1 µs of the fixed
 * header), ours with a provider without it (awaits getAccessToken()), and ours with
 * `manager` (whatever it offers), each against the fixed header measured in the same rounds.
 */
export async function interceptorAloneRows(token: string, manager: TokenProvider): Promise<Row[]> {
  const fixed = fixedHeaderInterceptor(token);
  const sides: Record<string, Interceptor> = {
    fixed,
    current: createAuthInterceptor(providerWithCurrent(token)),
    awaited: createAuthInterceptor({ getAccessToken: async () => token, accepted: () => {} }),
    manager: createAuthInterceptor(manager),
  };
  const perSide = await measure(sides);
  const base = perSide.fixed!;
  const row = (name: string, ns: number, target?: number): Row => ({
    name,
    ours: ns.toFixed(0),
    baseline: base.toFixed(0),
    ratio: `+${(ns - base).toFixed(0)} ns`,
    ...(target === undefined ? { target: "—" } : { target: `≤ +${target} ns`, met: ns - base <= target }),
  });
  const managerHasCurrent = typeof manager.current === "function";
  return [
    row("1. interceptor alone, in-process, next answers at once: provider with current() (CPU ns per call)", perSide.current!, 1000),
    row("1. … provider without current(): getAccessToken() awaited (CPU ns per call)", perSide.awaited!),
    row(`1. … the token manager (${managerHasCurrent ? "with" : "without"} current()) (CPU ns per call)`, perSide.manager!),
  ];
}

/**
 * The rows, measured in a fresh process with a token manager of its own holding `token` for
 * an hour (it never asks an identity provider). The token goes by environment, not argv.
 */
export async function interceptorAloneRowsInChild(token: string): Promise<Row[]> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url)], {
    env: { ...process.env, BENCH_ALONE_TOKEN: token },
    maxBuffer: 1024 * 1024,
  });
  return JSON.parse(stdout) as Row[];
}

/** The median over rounds of each side's mean CPU ns per call. */
async function measure(sides: Record<string, Interceptor>): Promise<Record<string, number>> {
  const names = Object.keys(sides);
  const handlers = Object.fromEntries(names.map((n) => [n, sides[n]!(answerAtOnce)]));
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round += 1) {
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      const handler = handlers[name]!;
      const before = process.cpuUsage();
      for (let i = 0; i < CALLS_PER_ROUND; i += 1) await handler(request());
      const used = process.cpuUsage(before);
      if (round > 0) samples[name]!.push(((used.user + used.system) * 1e3) / CALLS_PER_ROUND); // round 0 warms up
    }
  }
  return Object.fromEntries(names.map((n) => [n, median(samples[n]!)]));
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const method = EchoService.method.say;
const signal = new AbortController().signal;
const contextValues = { get: () => undefined, set: () => contextValues, delete: () => contextValues } as never;

/** A unary request as the Connect transport hands it to the interceptors (its own new headers). */
function request(): UnaryRequest {
  const header = new Headers();
  header.set("content-type", "application/proto");
  header.set("connect-protocol-version", "1");
  header.set("connect-timeout-ms", "10000");
  return {
    stream: false,
    service: EchoService,
    method,
    requestMethod: "POST",
    url: "http://127.0.0.1/connectoidc.test.v1.EchoService/Say",
    signal,
    header,
    contextValues,
    message: { text: "bench" } as never,
  };
}

const response = {
  stream: false,
  service: EchoService,
  method,
  header: new Headers(),
  trailer: new Headers(),
  message: {} as never,
} as UnaryResponse;

/** The next step of the chain, answering at once. */
const answerAtOnce = ((_req: UnaryRequest) => Promise.resolve(response)) as Parameters<Interceptor>[0];

// Run as a script (by interceptorAloneRowsInChild): after every declaration above.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const token = process.env.BENCH_ALONE_TOKEN;
  if (token === undefined) throw new Error("interceptor-alone: BENCH_ALONE_TOKEN is not set");
  const manager = createTokenManager({ issuer: "https://issuer.invalid", clientId: "bench", store: memoryStore() });
  await manager.setTokens({ access_token: token, token_type: "Bearer", expires_in: 3600 });
  const rows = await interceptorAloneRows(token, manager);
  manager.close();
  process.stdout.write(JSON.stringify(rows));
}

/**
 * Starts and drives process-worker.ts children for the multi-process tests, and sums
 * up their reports. Every child started here is remembered, so `killAll()` (call it in
 * `after`) leaves none behind whatever happened to the test.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { WorkerReport } from "./process-worker.js";
import { bundledWorker } from "./worker-bundle.js";

const script = fileURLToPath(new URL("./process-worker.ts", import.meta.url));
const running = new Set<ChildProcess>();

/** The store every process shares: a file, or a keyring entry (with the keyring's env). */
export type SharedStore =
  | { readonly kind: "file"; readonly path: string; readonly env?: NodeJS.ProcessEnv }
  | { readonly kind: "keyring"; readonly service: string; readonly account: string; readonly env: NodeJS.ProcessEnv };

export interface Target {
  readonly issuer: string;
  readonly clientId: string;
  readonly server?: string;
  readonly store: SharedStore;
}

interface Line {
  readonly kind: string;
  readonly [key: string]: unknown;
}

export interface WorkerHandle {
  readonly child: ChildProcess;
  /** Resolves with the first line of this kind; rejects if the process exits first. */
  line(kind: string): Promise<Line>;
  send(text: string): void;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

function storeArgs(store: SharedStore): string[] {
  return store.kind === "file"
    ? ["--store", "file", "--path", store.path]
    : ["--store", "keyring", "--service", store.service, "--account", store.account];
}

export function startWorker(mode: "call" | "login", target: Target, extra: string[] = []): WorkerHandle {
  const args = [
    bundledWorker(script),
    mode,
    "--issuer",
    target.issuer,
    "--client-id",
    target.clientId,
    ...(target.server !== undefined ? ["--server", target.server] : []),
    ...storeArgs(target.store),
    ...extra,
  ];
  const child = spawn(process.execPath, args, {
    env: target.store.env ?? process.env,
    stdio: ["pipe", "pipe", "inherit"],
  });
  running.add(child);
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve(code ?? signal ?? "unknown");
    }),
  );
  const lines: Line[] = [];
  const waiters: { kind: string; resolve: (line: Line) => void }[] = [];
  createInterface({ input: child.stdout! }).on("line", (text) => {
    let line: Line;
    try {
      line = JSON.parse(text) as Line;
    } catch {
      line = { kind: "text", text };
    }
    lines.push(line);
    for (const waiter of waiters.filter((w) => w.kind === line.kind)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  });
  child.stdin?.on("error", () => {}); // a child that died must not crash the test with EPIPE
  return {
    child,
    line(kind) {
      const seen = lines.find((l) => l.kind === kind);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<Line>((resolve, reject) => {
        waiters.push({ kind, resolve });
        void exited.then((code) => {
          // The exit event comes after the last stdout line has been read.
          setImmediate(() => {
            const found = lines.find((l) => l.kind === kind);
            if (found !== undefined) resolve(found);
            else {
              const error = lines.find((l) => l.kind === "error");
              reject(
                new Error(
                  `worker ${child.pid} (${mode}) exited (${code}) without a "${kind}" line${error ? `: ${JSON.stringify(error)}` : ""}`,
                ),
              );
            }
          });
        });
      });
    },
    send(text) {
      child.stdin?.write(text);
    },
    exited,
    kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/**
 * A login stored by a process of its own, as a user's `login` command would. The process
 * is started (and ready) before `login` runs, and gets the response at once: setTokens
 * dates the token from when it is called, so a response that waited for a process to
 * start would be taken for fresher than it is.
 */
export interface LoginProcess {
  /** Runs `login` and has the process store its result; resolves with when it was stored. */
  store(login: () => Promise<object>): Promise<number>;
}

export async function startLogin(target: Target): Promise<LoginProcess> {
  const worker = startWorker("login", target);
  await worker.line("ready");
  return {
    async store(login) {
      worker.child.stdin?.end(JSON.stringify(await login()));
      const line = await worker.line("stored");
      await worker.exited;
      return line.at as number;
    },
  };
}

/** `count` workers calling the server; resolves when all are ready, with a `go` that starts them together. */
export async function startCallers(
  target: Target,
  count: number,
  options: { durationMs: number; intervalMin?: number; intervalMax?: number; extra?: readonly string[] },
): Promise<{ workers: WorkerHandle[]; go(): number; reports(): Promise<WorkerReport[]> }> {
  const workers = Array.from({ length: count }, () =>
    startWorker("call", target, [
      "--duration-ms",
      String(options.durationMs),
      "--interval-min",
      String(options.intervalMin ?? 50),
      "--interval-max",
      String(options.intervalMax ?? 100),
      ...(options.extra ?? []),
    ]),
  );
  await Promise.all(workers.map((w) => w.line("ready")));
  return {
    workers,
    go() {
      const at = Date.now();
      for (const w of workers) w.send("go\n");
      return at;
    },
    reports: () => Promise.all(workers.map(async (w) => (await w.line("report")) as unknown as WorkerReport)),
  };
}

/** SIGKILLs every child still running; for `after`. */
export async function killAll(): Promise<void> {
  const exits = [...running].map((child) => new Promise((resolve) => child.once("exit", resolve)));
  for (const child of running) child.kill("SIGKILL");
  await Promise.all(exits);
}

export interface FleetTotals {
  readonly processes: number;
  readonly calls: number;
  readonly ok: number;
  readonly failures: number;
  readonly failureCodes: Record<string, number>;
  readonly events: Record<string, number>;
  readonly maxCallMs: number;
  readonly slowCalls: number;
  /** From the first start to the last end, ms. */
  readonly elapsedMs: number;
}

export function totals(reports: readonly WorkerReport[]): FleetTotals {
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  };
  const failureCodes: Record<string, number> = {};
  const events: Record<string, number> = {};
  for (const r of reports) {
    add(failureCodes, r.failureCodes);
    add(events, r.events);
  }
  const sum = (f: (r: WorkerReport) => number) => reports.reduce((s, r) => s + f(r), 0);
  return {
    processes: reports.length,
    calls: sum((r) => r.calls),
    ok: sum((r) => r.ok),
    failures: sum((r) => r.failures),
    failureCodes,
    events,
    maxCallMs: Math.max(0, ...reports.map((r) => r.maxCallMs)),
    slowCalls: sum((r) => r.slowCalls),
    elapsedMs: Math.max(...reports.map((r) => r.endedAt)) - Math.min(...reports.map((r) => r.startedAt)),
  };
}

/** Refreshes (token-endpoint requests made by the workers) = every `refreshed:*` event. */
export function refreshedCount(events: Record<string, number>): number {
  return Object.entries(events)
    .filter(([k]) => k.startsWith("refreshed:"))
    .reduce((s, [, v]) => s + v, 0);
}

/** Counts as `key=n` pairs in key order, for a fleet's diagnostics ("none" when empty). */
export function formatCounts(counts: Record<string, number>): string {
  return (
    Object.entries(counts)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(" ") || "none"
  );
}

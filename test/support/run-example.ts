/**
 * Runs an example as a user would and collects its output. The demo runs as `npm run demo`
 * does (`node --import tsx examples/demo.ts`); the others start from their esbuild bundle
 * (test/support/worker-bundle.ts: the same code, about 0.65 s of CPU less per process, and
 * the CLI cases start dozens).
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { bundledWorker } from "./worker-bundle.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

export interface ExampleRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time of the run. */
  readonly ms: number;
}

const start = (example: string): string[] =>
  example === "demo" ? ["--import", "tsx", `examples/${example}.ts`] : [bundledWorker(`${root}examples/${example}.ts`)];

export function runExample(example: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<ExampleRun> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...start(example), ...args], {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
  });
}

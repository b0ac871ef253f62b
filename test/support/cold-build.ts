/**
 * A plain-JavaScript copy of the package for cold-start measurements: the package built
 * as scripts/build.mjs builds dist/ (scripts/bundle.mjs: one bundle per entry point, shared
 * chunks), and gen/ and the cold-start child scripts transformed file by file, as ESM or
 * as CommonJS. Children run it with plain `node`: no tsx, so a fresh process pays what a
 * user's process pays.
 * The copy lives in a temp folder whose node_modules links to the repository's.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { transform } from "esbuild";
import { bundle, entriesOf } from "../../scripts/bundle.mjs";
import type { ColdChildReport } from "./cold-client.js";

const root = resolve(import.meta.dirname, "../..");

/** The child scripts of the cold-start bench and test, copied with the package. */
const childScripts = [
  "test/support/cold-client.ts",
  "test/support/cold-fixed.ts",
  "test/support/cold-seed.ts",
  "test/support/cold-packages.ts",
  "test/support/cold-cpu.ts",
];

export interface ColdCopy {
  readonly format: "esm" | "cjs";
  readonly dir: string;
  /** The copy's file for a repository path: `test/support/cold-client.ts` → `<dir>/test/support/cold-client.js`. */
  file(repoPath: string): string;
  remove(): Promise<void>;
}

export async function buildColdCopy(format: "esm" | "cjs"): Promise<ColdCopy> {
  const dir = await mkdtemp(join(tmpdir(), `connect-oidc-cold-${format}-`));
  try {
    // The package exactly as `npm run build` makes dist/ (bundles per entry, shared chunks).
    await bundle({ entries: entriesOf(root), outdir: join(dir, "pkg") });
    const sources = [...(await tsFiles(join(root, "gen"))), ...childScripts.map((p) => join(root, p))];
    await Promise.all(
      sources.map(async (source) => {
        const { code } = await transform(await readFile(source, "utf8"), {
          loader: "ts",
          format,
          platform: "node",
          target: "node20",
          sourcefile: source,
        });
        const out = join(dir, relative(root, source).replace(/\.ts$/, ".js"));
        await mkdir(dirname(out), { recursive: true });
        // The child scripts import the entry points from src/: here, the built package.
        await writeFile(out, code.replaceAll("../../src/", `../../pkg/${format}/`));
      }),
    );
    await writeFile(join(dir, "package.json"), `${JSON.stringify({ type: format === "esm" ? "module" : "commonjs", private: true })}\n`);
    await symlink(join(root, "node_modules"), join(dir, "node_modules"), "dir");
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    format,
    dir,
    file: (repoPath) => join(dir, repoPath.replace(/\.ts$/, ".js")),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

async function tsFiles(folder: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) found.push(...(await tsFiles(path)));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) found.push(path);
  }
  return found;
}

export interface ColdRun {
  /** Wall time from spawn to exit, ms. */
  readonly ms: number;
  readonly report: ColdChildReport;
}

/** Runs a child script of the copy with `config` as its argument; throws when it fails. */
export function runColdChild(
  copy: ColdCopy,
  script: string,
  config: unknown,
  options: { readonly env?: NodeJS.ProcessEnv; readonly nodeArgs?: readonly string[] } = {},
): Promise<ColdRun> {
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    execFile(
      process.execPath,
      [...(options.nodeArgs ?? []), copy.file(script), JSON.stringify(config)],
      { env: options.env ?? process.env },
      (error, stdout, stderr) => {
        const ms = performance.now() - started;
        let report: ColdChildReport | undefined;
        try {
          report = JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as ColdChildReport;
        } catch {
          report = undefined;
        }
        if (error || report?.ok !== true) reject(new Error(`${script} failed: ${stdout}${stderr}${error ? ` (${error.message})` : ""}`));
        else resolvePromise({ ms, report });
      },
    );
  });
}

/**
 * Node arguments that log the URL of every module resolved through the ESM loader
 * (`import` and `import()`, from ESM and CommonJS alike) to `logFile`, one a line:
 * a module-resolution hook, registered from a data: URL so it needs no file of its own.
 */
export function moduleLogArgs(logFile: string): string[] {
  const hooks = [
    'import { appendFileSync } from "node:fs";',
    "let log;",
    "export function initialize(data) { log = data.log; }",
    "export async function resolve(specifier, context, next) {",
    "  const resolved = await next(specifier, context);",
    '  appendFileSync(log, resolved.url + "\\n");',
    "  return resolved;",
    "}",
  ].join("\n");
  const register = [
    'import { register } from "node:module";',
    `register(${JSON.stringify(dataUrl(hooks))}, { data: { log: ${JSON.stringify(logFile)} } });`,
  ].join("\n");
  return ["--import", dataUrl(register)];
}

function dataUrl(code: string): string {
  return `data:text/javascript,${encodeURIComponent(code)}`;
}

// The package's JavaScript as it ships: one bundle per entry point in package.json
// `exports`, code that two entries share in chunks both import (one copy of each module, so
// an error class thrown by `connect-oidc/node` is the one `connect-oidc` exports), and the
// dependencies left as imports. A fresh process loads three small files instead of one per
// module. CommonJS is made from the ESM output file by file, so it has the same chunks.
// Used by scripts/build.mjs (dist/) and by the cold-start bench and test (a temp copy).
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { build, transformSync } from "esbuild";

/** `{ index: "src/index.ts", node: "src/node.ts", … }` from package.json `exports`. */
export function entriesOf(root) {
  const { exports } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const entries = {};
  for (const value of Object.values(exports)) {
    const target = value?.import?.default;
    if (typeof target !== "string") continue; // "./package.json"
    const name = target.replace(/^\.\/dist\/esm\//, "").replace(/\.js$/, "");
    entries[name] = join(root, "src", `${name}.ts`);
  }
  return entries;
}

/**
 * Bundles `entries` into `outdir/esm` and `outdir/cjs` (entry files at the top, shared code
 * in `chunks/`). `sourcemap` writes .js.map files for the ESM build.
 */
export async function bundle({ entries, outdir, sourcemap = false, tsconfig }) {
  const esm = join(outdir, "esm");
  const cjs = join(outdir, "cjs");
  const result = await build({
    entryPoints: entries,
    outdir: esm,
    bundle: true,
    splitting: true,
    format: "esm",
    // Neutral: the `connect-oidc` entry runs in browsers, Deno and Bun too; Node built-ins
    // (node:*) and every package stay imports.
    platform: "neutral",
    packages: "external",
    target: "node20",
    chunkNames: "chunks/[name]-[hash]",
    sourcemap,
    ...(tsconfig === undefined ? {} : { tsconfig }),
    write: true,
    metafile: true,
    logLevel: "warning",
  });
  const outputs = Object.keys(result.metafile.outputs)
    .filter((out) => out.endsWith(".js"))
    .map((out) => resolve(out)); // metafile paths are relative to the working folder
  for (const out of outputs) {
    const file = join(cjs, relative(esm, out));
    mkdirSync(dirname(file), { recursive: true });
    const { code } = transformSync(readFileSync(out, "utf8"), { format: "cjs", platform: "node", target: "node20" });
    writeFileSync(file, code);
  }
  writeFileSync(join(cjs, "package.json"), `${JSON.stringify({ type: "commonjs" })}\n`);
  return outputs;
}

/** Every file under `dir`, recursively. */
export function* filesUnder(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(path);
    else yield path;
  }
}

// Builds dist/: the types with tsc (dist/esm/*.d.ts, copied to dist/cjs), and the JavaScript
// with esbuild, one bundle per entry point in package.json `exports` with shared chunks, as
// ESM and CommonJS (scripts/bundle.mjs).
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { bundle, entriesOf, filesUnder } from "./bundle.mjs";

rmSync("dist", { recursive: true, force: true });
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json", "--emitDeclarationOnly"], {
  stdio: "inherit",
});
await bundle({ entries: entriesOf("."), outdir: "dist", sourcemap: true, tsconfig: "tsconfig.build.json" });
for (const path of filesUnder("dist/esm")) {
  if (!path.endsWith(".d.ts")) continue;
  const out = path.replace(/^dist[\\/]esm/, "dist/cjs");
  mkdirSync(dirname(out), { recursive: true });
  cpSync(path, out);
}

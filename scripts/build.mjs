// Builds dist/esm with tsc (JS + types) and dist/cjs from it with esbuild (one file per module).
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { transformSync } from "esbuild";
import { readFileSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else yield path;
  }
}

mkdirSync("dist/cjs", { recursive: true });
for (const path of files("dist/esm")) {
  const out = path.replace(/^dist[\\/]esm/, "dist/cjs");
  mkdirSync(join(out, ".."), { recursive: true });
  if (path.endsWith(".js")) {
    const { code } = transformSync(readFileSync(path, "utf8"), { format: "cjs", platform: "node", target: "node20" });
    writeFileSync(out, code);
  } else if (path.endsWith(".d.ts")) {
    cpSync(path, out);
  }
}
writeFileSync("dist/cjs/package.json", `${JSON.stringify({ type: "commonjs" })}\n`);

/**
 * The tests' worker scripts, bundled with esbuild (which tsx runs on the fly) into
 * node_modules/.cache/connect-oidc-test-workers/, one file per content: a worker process
 * then starts on about 0.17 s of CPU instead of the 0.93 s it takes under `--import tsx`
 * (0.29 s with its packages left as imports), and the fleets start dozens of them on a 2-core
 * machine. src/, test/support/ and the installed packages are bundled in as Node would load
 * them (the same code: one file instead of hundreds to find and compile); native addons
 * (@napi-rs/keyring) stay imports. Files are named by a hash of their content and written
 * atomically: test files running side by side share them and never see half a file.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import { testBundleOptions } from "../../scripts/test-bundles.mjs";

const folder = fileURLToPath(new URL("../../node_modules/.cache/connect-oidc-test-workers/", import.meta.url));
const built = new Map<string, string>();

/** The path of `script` (a .ts file) bundled; built once per process and content. Run it with `node <path>`. */
export function bundledWorker(script: string): string {
  const known = built.get(script);
  if (known !== undefined) return known;
  const { outputFiles } = buildSync({
    entryPoints: [script],
    ...testBundleOptions,
    packages: undefined,
    external: ["@napi-rs/*"],
    // The CommonJS packages bundled in (proper-lockfile, ioredis) require Node's own modules.
    banner: { js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);' },
    write: false,
    logLevel: "silent",
  });
  const text = outputFiles[0]!.contents;
  const file = join(folder, `${basename(script, ".ts")}-${createHash("sha256").update(text).digest("hex").slice(0, 16)}.mjs`);
  if (!existsSync(file)) {
    mkdirSync(folder, { recursive: true });
    const partial = `${file}.${process.pid}.partial`;
    writeFileSync(partial, text);
    renameSync(partial, file);
  }
  built.set(script, file);
  return file;
}

/**
 * The test files as `node --test` runs them in `npm test`: one esbuild bundle per file, in
 * node_modules/.cache/connect-oidc-tests/ (same folders as in test/), with src/, test/support/
 * and gen/ bundled in and packages left as imports. A test process then starts on about
 * 0.9 s of CPU instead of 2 s under `--import tsx`, whose loader hooks see every module a
 * test loads (oidc-provider alone is hundreds); 80 files on 2 cores make that a minute.
 * What the code says of where it is (`import.meta.url`, `.dirname`, `.filename`) is the
 * source file's, as under tsx: a test finds its workers, fixtures and the repository root
 * as before. tsconfig `paths` apply (`connect-oidc` is src/index.ts, as tsx reads it).
 * Files a test starts in a child process (`--import tsx` scripts, workers) are untouched.
 */
import { readFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const bundleFolder = join(root, "node_modules", ".cache", "connect-oidc-tests");

/** How a test or worker script is bundled: for Node 20, packages left as imports, class names kept. */
export const testBundleOptions = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  keepNames: true,
};

/** Each module's own `import.meta.url`, `.dirname` and `.filename`, as literals. */
const ownLocation = {
  name: "own-location",
  setup(b) {
    b.onLoad({ filter: /\.[cm]?[jt]s$/ }, async (args) => {
      if (/[\\/]node_modules[\\/]/.test(args.path)) return undefined;
      const text = await readFile(args.path, "utf8");
      if (!text.includes("import.meta")) return undefined;
      const own = { url: pathToFileURL(args.path).href, dirname: dirname(args.path), filename: args.path };
      // Code only: a name in quotes (as in this file) is text.
      const contents = text.replace(/(?<!["'`])\bimport\.meta\.(url|dirname|filename)\b/g, (_, key) => JSON.stringify(own[key]));
      return { contents, loader: /\.[cm]?ts$/.test(args.path) ? "ts" : "js", resolveDir: dirname(args.path) };
    });
  },
};

/**
 * Bundles `files` (paths relative to the repository, e.g. test/unit/policy.test.ts) and
 * returns a map from each to its bundle's path. Throws esbuild's errors when one does not build.
 */
export async function bundleTests(files) {
  await build({
    absWorkingDir: root,
    entryPoints: files,
    outbase: root,
    outdir: bundleFolder,
    outExtension: { ".js": ".mjs" },
    ...testBundleOptions,
    sourcemap: "linked",
    sourcesContent: false,
    plugins: [ownLocation],
    logLevel: "error",
  });
  return new Map(files.map((f) => [f, join(bundleFolder, relative(root, resolve(root, f)).replace(/\.ts$/, ".mjs"))]));
}

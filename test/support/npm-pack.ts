/**
 * `npm pack` of this repository into a folder, one test process at a time. npm pack runs
 * `prepack` (npm run build), which deletes dist/ and writes it again: two at once (the pack
 * test and the doc snippets, in different lanes) broke each other's tarball. The lock is
 * connect-oidc's own cross-process file lock.
 *
 * One `npm test` packs once: scripts/run-tests.mjs names its run (CONNECT_OIDC_TEST_RUN), and
 * the first pack of a run is kept under node_modules/.cache/ for the others (about 8 s of CPU
 * each). Outside such a run, a process packs once for itself.
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import { copyFile, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { createFileLock } from "../../src/node.js";

const root = resolve(import.meta.dirname, "../..");
const cache = resolve(root, "node_modules/.cache/connect-oidc-npm-pack");
const lock = createFileLock(join(cache, "pack.lock"), { timeoutMs: 600_000 });
const run = process.env.CONNECT_OIDC_TEST_RUN ?? `process-${process.pid}-${randomUUID()}`;
// A run's pack is removed by scripts/run-tests.mjs when the run ends; a process's own, here.
if (process.env.CONNECT_OIDC_TEST_RUN === undefined) process.once("exit", () => rmSync(join(cache, run), { recursive: true, force: true }));

export interface Packed {
  readonly filename: string;
  readonly files: readonly { readonly path: string }[];
}

/** Packs the repository into `destination` (as a user's `npm pack` would) and returns npm's description of the tarball. */
export async function npmPack(destination: string): Promise<Packed> {
  await mkdir(cache, { recursive: true });
  const packed = await lock.lock(async () => {
    const folder = join(cache, run);
    const description = join(folder, "pack.json");
    const kept = await readFile(description, "utf8").then(
      (text) => JSON.parse(text) as Packed,
      () => undefined,
    );
    if (kept !== undefined) return kept;
    await mkdir(folder, { recursive: true });
    const { stdout } = await promisify(execFile)("npm", ["pack", "--json", "--pack-destination", folder], {
      cwd: root,
      encoding: "utf8",
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, npm_config_loglevel: "error" },
    });
    const fresh = (JSON.parse(stdout) as Packed[])[0]!;
    await writeFile(`${description}.partial`, JSON.stringify(fresh));
    await rename(`${description}.partial`, description);
    return fresh;
  });
  await copyFile(join(cache, run, packed.filename), join(destination, packed.filename));
  return packed;
}

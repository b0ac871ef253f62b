/**
 * `npm pack` of this repository into a folder, one test process at a time. npm pack runs
 * `prepack` (npm run build), which deletes dist/ and writes it again: two at once (the pack
 * test and the doc snippets, in different lanes) broke each other's tarball. The lock is
 * connect-oidc's own cross-process file lock.
 */
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { createFileLock } from "../../src/node.js";

const root = resolve(import.meta.dirname, "../..");
const lock = createFileLock(resolve(root, "node_modules/.cache/connect-oidc-npm-pack.lock"), { timeoutMs: 600_000 });

export interface Packed {
  readonly filename: string;
  readonly files: readonly { readonly path: string }[];
}

/** Packs the repository into `destination` (as a user's `npm pack` would) and returns npm's description of the tarball. */
export async function npmPack(destination: string): Promise<Packed> {
  const { stdout } = await lock.lock(() =>
    promisify(execFile)("npm", ["pack", "--json", "--pack-destination", destination], {
      cwd: root,
      encoding: "utf8",
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, npm_config_loglevel: "error" },
    }),
  );
  return (JSON.parse(stdout) as Packed[])[0]!;
}

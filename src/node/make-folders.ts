/**
 * `mkdir -p`, bounded. Node's `mkdir(path, { recursive: true })` never returns where
 * mkdir answers ENOENT inside a folder that exists (a kernel file system such as /proc):
 * it climbs up, finds the parent, and tries again forever, holding a thread-pool thread.
 * Here each missing folder is made once, top down, and the first failure is thrown.
 */
import { mkdir, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";

/** Creates `folder` and any missing folder above it with `mode`; existing ones are left as they are. */
export async function makeFolders(folder: string, mode: number): Promise<void> {
  const missing: string[] = [];
  for (let current = resolve(folder); ; current = dirname(current)) {
    const info = await stat(current).catch((error: unknown) => {
      if ((error as { code?: unknown }).code === "ENOENT") return undefined;
      throw error;
    });
    if (info?.isDirectory()) break;
    if (info !== undefined) throw Object.assign(new Error(`${current} is not a folder`), { code: "ENOTDIR", path: current });
    missing.push(current);
    if (dirname(current) === current) break; // the root itself is missing: mkdir says why
  }
  for (const path of missing.reverse()) {
    await mkdir(path, { mode }).catch((error: unknown) => {
      // Made meanwhile by another process: fine if it is a folder (the next mkdir tells otherwise).
      if ((error as { code?: unknown }).code !== "EEXIST") throw error;
    });
  }
}

/**
 * jose, loaded once on first use through a dynamic import: jose 6 is ESM-only, and a dynamic
 * import (kept as such in the CommonJS build) loads it on every Node version, where a
 * `require` would need Node 20.19 or later. A failed load is not kept.
 */

export type Jose = typeof import("jose");

let loading: Promise<Jose> | undefined;

export function loadJose(): Promise<Jose> {
  loading ??= import("jose").catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

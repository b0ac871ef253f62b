/** Types of scripts/test-bundles.mjs (plain JavaScript: scripts/run-tests.mjs runs it without tsx). */
import type { BuildOptions } from "esbuild";
export const testBundleOptions: BuildOptions;
export const bundleFolder: string;
export function bundleTests(files: readonly string[]): Promise<Map<string, string>>;

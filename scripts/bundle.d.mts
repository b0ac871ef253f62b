/** Types of scripts/bundle.mjs (plain JavaScript: `npm run build` runs it without tsx). */
export function entriesOf(root: string): Record<string, string>;
export function bundle(options: {
  entries: Record<string, string>;
  outdir: string;
  sourcemap?: boolean;
  tsconfig?: string;
}): Promise<string[]>;
export function filesUnder(dir: string): Generator<string>;

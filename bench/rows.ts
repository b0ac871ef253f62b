/** One benchmark row: ours and a baseline measured in the same run, and the target. */
export interface Row {
  readonly name: string;
  readonly ours: string;
  readonly baseline: string;
  /** ours ÷ baseline, when both are numbers worth dividing. */
  readonly ratio?: string;
  readonly target: string;
  /** Whether ours meets the target; undefined where the row has no pass/fail target. */
  readonly met?: boolean;
}

export const ms = (x: number) => `${x.toFixed(2)} ms`;

/** The p-th percentile (0–100) of `xs`. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export const ratio = (ours: number, baseline: number) => `${(ours / baseline).toFixed(3)}×`;

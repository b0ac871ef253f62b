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

/** One side of a latency comparison: every call's latency (ms) and the time spent calling (ms). */
export interface LatencySide {
  readonly latency: readonly number[];
  readonly busyMs: number;
}

/**
 * The median, p99 and calls/s rows of two sides measured in the same rounds. Targets, when
 * given: the median ratio at most `median`, the throughput ratio at least `callsPerSecond`.
 */
export function latencyRows(
  label: string,
  ours: LatencySide,
  baseline: LatencySide,
  targets: { readonly median?: number; readonly callsPerSecond?: number } = {},
): Row[] {
  const p50 = [percentile(ours.latency, 50), percentile(baseline.latency, 50)] as const;
  const p99 = [percentile(ours.latency, 99), percentile(baseline.latency, 99)] as const;
  const rps = [ours.latency.length / (ours.busyMs / 1000), baseline.latency.length / (baseline.busyMs / 1000)] as const;
  const { median, callsPerSecond } = targets;
  return [
    {
      name: `${label}: median`,
      ours: ms(p50[0]),
      baseline: ms(p50[1]),
      ratio: ratio(...p50),
      ...(median === undefined ? { target: "—" } : { target: `≤ ${median.toFixed(2)}×`, met: p50[0] / p50[1] <= median }),
    },
    { name: `${label}: p99`, ours: ms(p99[0]), baseline: ms(p99[1]), ratio: ratio(...p99), target: "—" },
    {
      name: `${label}: calls/s`,
      ours: rps[0].toFixed(0),
      baseline: rps[1].toFixed(0),
      ratio: ratio(...rps),
      ...(callsPerSecond === undefined
        ? { target: "—" }
        : { target: `≥ ${callsPerSecond.toFixed(2)}×`, met: rps[0] / rps[1] >= callsPerSecond }),
    },
  ];
}

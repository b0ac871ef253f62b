/**
 * Durations on the command line: "90s", "5m", "2h", "1h30m", "1500ms"; a bare number is seconds.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== trimmed) {
    throw new Error(`not a duration: ${JSON.stringify(text)} (try 90s, 5m, 2h or 1h30m)`);
  }
  return parts.reduce((ms, p) => ms + Number(p[1]) * UNIT_MS[p[2]!]!, 0);
}

/** "1 h 5 min", "35 s", "800 ms": for humans, not for parsing. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const h = Math.floor(s / 3600);
  const min = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  return [h ? `${h} h` : "", min ? `${min} min` : "", rest ? `${rest} s` : ""].filter(Boolean).join(" ");
}

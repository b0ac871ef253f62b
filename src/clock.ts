/**
 * Time in one place: the system clock behind `Clock` (the wall clock for what is persisted
 * and shared, the monotonic one for intervals and timeouts) and the clamp every timer goes
 * through, because setTimeout fires at once past about 24.8 days.
 */
import type { Clock } from "./types.js";

/** setTimeout's delay is a signed 32-bit integer; a longer one fires at once (with a warning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A delay setTimeout takes as meant: not negative, not NaN, at most MAX_TIMER_MS (about 24.8 days). */
export function clampDelay(ms: number): number {
  return Number.isNaN(ms) ? 0 : Math.min(Math.max(0, ms), MAX_TIMER_MS);
}

/**
 * The real clock: `now` is the wall clock (persisted and compared across processes),
 * `monotonic` never steps (intervals, timeouts, ordering). Timers are clamped and unref'd:
 * a pending refresh never keeps a process alive.
 */
export const systemClock: Required<Clock> = {
  now: Date.now, // called as `clock.now()`: Date.now ignores its `this`
  monotonic: () => performance.now(),
  setTimeout(fn, ms) {
    const handle = setTimeout(fn, clampDelay(ms));
    (handle as { unref?: () => void }).unref?.();
    return handle;
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

/** The monotonic reading of `clock`; a clock without one falls back to its wall clock. */
export function monotonicOf(clock: Clock): () => number {
  return clock.monotonic ? () => clock.monotonic!() : () => clock.now();
}

import type { Clock } from "./types.js";

// setTimeout's delay is a signed 32-bit integer; longer delays fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The real clock. Timers are unref'd: a pending refresh never keeps a process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const handle = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    (handle as { unref?: () => void }).unref?.();
    return handle;
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

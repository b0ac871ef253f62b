/**
 * A clock driven by the test: time moves only through advance(), so hours of token
 * lifetimes pass in milliseconds. Timers fire in time order as time passes them.
 */
import type { Clock } from "../../src/types.js";

export interface ManualClock extends Clock {
  /** Move time forward, firing due timers (and letting their promises settle) on the way. */
  advance(ms: number): Promise<void>;
  readonly pendingTimers: number;
}

export function createManualClock(start = Date.now()): ManualClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: now + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        let due: [number, { at: number; fn: () => void }] | undefined;
        for (const entry of timers) if (entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)) due = entry;
        if (due === undefined) break;
        timers.delete(due[0]);
        now = Math.max(now, due[1].at);
        due[1].fn();
        await settle();
      }
      now = end;
      await settle();
    },
    get pendingTimers() {
      return timers.size;
    },
  };
}

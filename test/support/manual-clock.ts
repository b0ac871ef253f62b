/**
 * A clock driven by the test: time moves only through advance(), so hours of token
 * lifetimes pass in milliseconds. Timers fire in time order as time passes them.
 * Two readings, as on a real machine: the wall clock (`now`), which `stepWall` can move
 * on its own (an NTP correction, a resumed VM), and the monotonic clock, which never steps.
 */
import type { Clock } from "../../src/types.js";

export interface ManualClock extends Required<Clock> {
  /** Move both clocks forward, firing due timers (and letting their promises settle) on the way. */
  advance(ms: number): Promise<void>;
  /** Step the wall clock alone, forward or backward; timers (monotonic) are not moved. */
  stepWall(ms: number): Promise<void>;
  readonly pendingTimers: number;
}

export function createManualClock(start = Date.now()): ManualClock {
  let mono = 0;
  let wallOffset = start;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
  return {
    now: () => mono + wallOffset,
    monotonic: () => mono,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: mono + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    async advance(ms) {
      const end = mono + ms;
      for (;;) {
        let due: [number, { at: number; fn: () => void }] | undefined;
        for (const entry of timers) if (entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)) due = entry;
        if (due === undefined) break;
        timers.delete(due[0]);
        mono = Math.max(mono, due[1].at);
        due[1].fn();
        await settle();
      }
      mono = end;
      await settle();
    },
    async stepWall(ms) {
      wallOffset += ms;
      await settle();
    },
    get pendingTimers() {
      return timers.size;
    },
  };
}

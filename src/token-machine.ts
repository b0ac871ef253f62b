/**
 * The token manager's state holder: the one place its state changes. Every change re-arms
 * the background timer (when the state entered wants one) and announces the state entered.
 */
import { clampDelay, monotonicOf } from "./clock.js";
import { decide, type Now, type Settings, wakeAt } from "./token-decision.js";
import { entryEvents, type Input, type State, transition } from "./token-state.js";
import type { Clock, RefreshReason, TokenEvent } from "./types.js";
import { MAX_SLEEP_MS } from "./policy.js";

export interface Machine {
  readonly state: State;
  /** Feed an input to the transition function; a changed state re-arms the timer and emits its events. */
  apply(input: Input): void;
  now(): Now;
  monotonic(): number;
}

export interface MachineDeps {
  readonly settings: Settings;
  readonly clock: Clock;
  readonly onEvent: ((event: TokenEvent) => void) | undefined;
  /** The timer found a refresh due. */
  readonly onDue: (reason: RefreshReason) => void;
}

export function createMachine({ settings, clock, onEvent, onDue }: MachineDeps): Machine {
  const monotonic = monotonicOf(clock);
  let state: State = { kind: "loading" };
  let timer: unknown;

  const now = (): Now => ({ wall: clock.now(), monotonic: monotonic() });

  const emit = (event: TokenEvent) => {
    try {
      onEvent?.(event);
    } catch {
      // A listener's failure must not break token handling.
    }
  };

  const arm = (minimumMs: number) => {
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = undefined;
    const wake = wakeAt(state, settings);
    if (wake === undefined) return;
    // Wall-clock wakes sleep at most MAX_SLEEP_MS: the wall clock may step meanwhile.
    const delay = wake.monotonic !== undefined ? wake.monotonic - monotonic() : Math.min(wake.wall! - clock.now(), MAX_SLEEP_MS);
    timer = clock.setTimeout(onTimer, clampDelay(Math.max(delay, minimumMs)));
  };

  const onTimer = () => {
    timer = undefined;
    const decision = decide(state, now(), true, settings);
    if (decision.do === "refresh") onDue(decision.reason);
    // Nothing due after all (an early wake, a clock step): look again, never in a tight loop.
    else arm(1000);
  };

  return {
    get state() {
      return state;
    },
    apply(input) {
      const previous = state;
      const next = transition(previous, input);
      if (next === previous) return;
      state = next;
      arm(0);
      for (const event of entryEvents(previous, next, clock.now(), monotonic())) emit(event);
    },
    now,
    monotonic,
  };
}

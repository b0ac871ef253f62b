/**
 * The token manager's state holder: the one place its state changes. Every change re-arms
 * the background timer (when the state entered wants one) and announces the state entered.
 */
import { clampDelay, monotonicOf } from "../clock.js";
import { decide, type Now, type Settings, wakeAt } from "./decision.js";
import { entryEvents, type Input, type State, transition } from "./state.js";
import type { Clock, RefreshReason, TokenEvent } from "../types.js";
import { MAX_SLEEP_MS } from "../policy.js";

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
  /** Every state entered, before its events (the DPoP part remembers which key a token has). */
  readonly onChange?: (state: State) => void;
}

export function createMachine({ settings, clock, onEvent, onDue, onChange }: MachineDeps): Machine {
  const monotonic = monotonicOf(clock);
  let state: State = { kind: "loading" };
  let timer: unknown;
  // `login-expiring` was emitted for the login held: once per login and process. A login set
  // here (setTokens) or found anew in the store while re-login was required starts afresh;
  // refreshes do not (a provider with a sliding lifetime moves the end at every refresh).
  let announced = false;

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
    const due = wakeAt(state, settings);
    const expiring = expiringAt();
    const wake = expiring === undefined ? due : { ...due, wall: Math.min(due?.wall ?? expiring, expiring) };
    if (wake === undefined) return;
    // Wall-clock wakes sleep at most MAX_SLEEP_MS: the wall clock may step meanwhile.
    const wallDelay = wake.wall === undefined ? Number.POSITIVE_INFINITY : Math.min(wake.wall - clock.now(), MAX_SLEEP_MS);
    const delay = Math.min(wake.monotonic !== undefined ? wake.monotonic - monotonic() : Number.POSITIVE_INFINITY, wallDelay);
    timer = clock.setTimeout(onTimer, clampDelay(Math.max(delay, minimumMs)));
  };

  /** When `login-expiring` is due for the login held (wall clock), unless already announced. */
  const expiringAt = (): number | undefined => {
    const end = "login" in state ? state.login?.tokens.refreshExpiresAt : undefined;
    return end === undefined || announced ? undefined : end - settings.loginExpiringMs;
  };

  const announceExpiring = () => {
    const at = expiringAt();
    if (at === undefined || clock.now() < at) return;
    announced = true;
    emit({ type: "login-expiring", expiresAt: at + settings.loginExpiringMs });
  };

  const onTimer = () => {
    timer = undefined;
    announceExpiring();
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
      onChange?.(next);
      if (input.type === "replaced" || (input.type === "rechecked" && next.kind === "ready")) announced = false;
      arm(0);
      for (const event of entryEvents(previous, next, clock.now(), monotonic())) emit(event);
      announceExpiring();
    },
    now,
    monotonic,
  };
}

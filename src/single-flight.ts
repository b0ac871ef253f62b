/**
 * One operation at a time: callers that arrive while it runs share its promise.
 * The pending promise is cleared when it settles, so the next caller starts anew.
 */

export interface SingleFlight<T> {
  run(fn: () => Promise<T>): Promise<T>;
  readonly pending: Promise<T> | undefined;
}

export function createSingleFlight<T>(): SingleFlight<T> {
  let pending: Promise<T> | undefined;
  return {
    run(fn) {
      if (pending === undefined) {
        const started = (async () => fn())();
        pending = started;
        const clear = () => {
          if (pending === started) pending = undefined;
        };
        started.then(clear, clear);
      }
      return pending;
    },
    get pending() {
      return pending;
    },
  };
}

/** Ctrl-C once: the returned signal aborts, so the caller can stop cleanly (and end its session). Twice: exit at once. */
export function stopOnCtrlC(): AbortSignal {
  const controller = new AbortController();
  process.once("SIGINT", () => {
    process.stderr.write("Stopping (Ctrl-C again to quit at once)…\n");
    controller.abort();
    process.once("SIGINT", () => process.exit(130));
  });
  return controller.signal;
}

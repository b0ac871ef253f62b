/**
 * Ends a worker process once what it wrote to stdout has been handed to the OS. Where
 * stdout is a pipe the parent reads slowly, `process.exit()` right after a write can cut
 * the last line short: the parent then sees the process end "without a report line".
 * Never resolves: `await` it where `process.exit()` stood.
 */
export function exitFlushed(code: number): Promise<never> {
  return new Promise(() => {
    process.stdout.write("", () => process.exit(code));
  });
}

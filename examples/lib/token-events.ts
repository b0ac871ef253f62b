/**
 * One stderr line per TokenEvent. Events never carry token material, and neither do
 * these lines: only the kind of event, a reason, a time and an error message.
 */
import type { TokenEvent } from "connect-oidc";

/** 12:34:56 in local time. */
export function clockTime(epochMs: number): string {
  const d = new Date(epochMs);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

export function describeTokenEvent(event: TokenEvent): string {
  switch (event.type) {
    case "refreshed":
      return `✓ Token refreshed (${event.reason}, expires ${clockTime(event.expiresAt)})`;
    case "adopted":
      return `✓ Token adopted from the shared store (expires ${clockTime(event.expiresAt)})`;
    case "refresh-failed":
      return event.terminal
        ? `✗ Token refresh failed for good: ${event.error.message}`
        : `⚠ Token refresh failed: ${event.error.message}${event.retryAt === undefined ? "" : ` (next attempt ${clockTime(event.retryAt)})`}`;
    case "reauth-required":
      return `✗ Re-login required: ${event.error.message}`;
    case "misconfigured":
      return `✗ Fix the configuration: ${event.error.message}`;
    case "login-expiring":
      return `⚠ The login ends at ${new Date(event.expiresAt).toLocaleString()}: log in again when convenient`;
  }
}

/** An `onEvent` that prints every event to stderr, optionally prefixed (e.g. "[heartbeat] "). */
export function printTokenEvents(prefix = "", write: (line: string) => void = (line) => process.stderr.write(`${line}\n`)) {
  return (event: TokenEvent) => write(`${prefix}${describeTokenEvent(event)}`);
}

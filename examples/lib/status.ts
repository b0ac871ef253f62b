/**
 * A login's status as a `status` / `whoami` command prints it: one `label: value` line
 * each, times as ISO dates with what is left; never a token (TokenStatus holds none).
 */
import type { TokenStatus } from "connect-oidc";
import { formatDuration } from "./duration.js";

/** The lines of `status`, at wall time `now` (epoch ms). */
export function formatStatus(status: TokenStatus, now = Date.now()): string[] {
  const when = (at: number) =>
    `${new Date(at).toISOString()} (${at >= now ? `in ${formatDuration(at - now)}` : `${formatDuration(now - at)} ago`})`;
  const who = [status.name, status.email ?? status.preferredUsername].filter((part) => part !== undefined).join(" ");
  const lines = [`state: ${status.state}`, `issuer: ${status.issuer}`, `client: ${status.clientId}`];
  if (status.subject !== undefined) lines.push(`subject: ${status.subject}${who === "" ? "" : ` (${who})`}`);
  if (status.tokenType !== undefined) {
    lines.push(`token type: ${status.tokenType}${status.dpopThumbprint !== undefined ? ` (key thumbprint ${status.dpopThumbprint})` : ""}`);
  }
  if (status.scope !== undefined) lines.push(`scope: ${status.scope}`);
  if (status.expiresAt !== undefined) lines.push(`access token expires: ${when(status.expiresAt)}`);
  if (status.refreshExpiresAt !== undefined) lines.push(`login ends: ${when(status.refreshExpiresAt)}`);
  lines.push(`can refresh: ${status.canRefresh ? "yes" : "no"}`);
  if (status.lastRefreshAt !== undefined) lines.push(`last refresh: ${when(status.lastRefreshAt)}`);
  if (status.retryAt !== undefined) lines.push(`next attempt: ${when(status.retryAt)}`);
  if (status.lastFailure !== undefined) lines.push(`last failure: ${status.lastFailure.code}: ${status.lastFailure.message}`);
  return lines;
}

/**
 * A process that saves a login to `fileStore(<path>)` and prints the outcome as one JSON
 * line: `{ "ok": true }` or `{ "error": { name, code, reason, message } }`. Run in its own
 * process so that a save that never ends (a path under /proc) can be killed at a bound.
 * Usage: store-save-worker.ts <path>
 */
import { fileStore } from "../../src/node.js";

const path = process.argv[2] ?? "";
const login = {
  version: 1 as const,
  issuer: "https://login.example.com",
  clientId: "failure-kinds",
  accessToken: "worker-access-token-0123456789abcdef",
  refreshToken: "worker-refresh-token-0123456789abcdef",
  issuedAt: Date.now(),
  expiresAt: Date.now() + 3600_000,
};
try {
  await fileStore(path).save(login);
  process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
} catch (error) {
  const e = error as { name?: unknown; code?: unknown; reason?: unknown; message?: unknown };
  process.stdout.write(`${JSON.stringify({ error: { name: e.name, code: e.code, reason: e.reason, message: e.message } })}\n`);
}

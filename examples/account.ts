/**
 * The login of the example clients, as a user looks after it: `status` prints who is
 * logged in and until when (from the store; the identity provider is not asked), `logout`
 * signs out — revoking the login at the provider when it can — for every process sharing
 * the store.
 *
 *   tsx examples/account.ts status --issuer https://login.example.com --client-id my-cli [--store keyring]
 *   tsx examples/account.ts logout --issuer https://login.example.com --client-id my-cli [--no-revoke]
 */
import { pathToFileURL } from "node:url";
import { createTokenManager } from "connect-oidc";
import { parseCli, runMain, usageError } from "./lib/cli.js";
import { isLoopback } from "./lib/login.js";
import { formatStatus } from "./lib/status.js";
import { STORE_HELP, storeFromFlag } from "./lib/store.js";

function parseFlags() {
  return parseCli({
    command: "tsx examples/account.ts",
    synopsis: "status|logout --issuer <url> --client-id <id> [flags]",
    description:
      "status: who is logged in, until when, the last refresh and failure (read from the store; no token is printed).\n" +
      "logout: revoke the login at the identity provider (when it offers revocation), then clear the store.",
    flags: {
      issuer: { type: "string", kind: "url", env: "OIDC_ISSUER", required: true, help: "the OIDC issuer" },
      "client-id": { type: "string", value: "<id>", env: "OIDC_CLIENT_ID", required: true, help: "this client's id at the issuer" },
      store: { type: "string", value: "<store>", help: `where the login is kept: ${STORE_HELP}` },
      "no-revoke": { type: "boolean", help: "logout: clear the store only; the provider keeps the login until it expires" },
    },
    positionals: { max: 1 },
    example: "tsx examples/account.ts status --issuer https://login.example.com --client-id my-cli",
  });
}

async function main(): Promise<number> {
  const { values, positionals } = parseFlags();
  const command = positionals[0];
  if (command !== "status" && command !== "logout")
    usageError(`expected a command, status or logout, got ${JSON.stringify(command ?? "")}`);
  const login = { issuer: values.issuer, clientId: values["client-id"] };
  using tokens = createTokenManager({
    ...login,
    store: storeFromFlag(values.store, login),
    allowInsecureRequests: isLoopback(values.issuer),
  });
  if (command === "status") {
    const status = await tokens.status();
    process.stdout.write(`${formatStatus(status).join("\n")}\n`);
    return status.state === "ready" ? 0 : 1;
  }
  // Default: revoke when the provider offers it; --no-revoke: the old, local-only sign-out.
  const result = await tokens.signOut(values["no-revoke"] ? { revoke: false } : {});
  process.stdout.write(result.revoked ? "signed out (revoked at the identity provider)\n" : "signed out on this machine\n");
  if (result.error !== undefined) process.stderr.write(`${result.error.message}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runMain("account", main);

/**
 * A service without a user: it gets its tokens with the client credentials grant, and the
 * token manager fetches a new one before the current one runs out. No login, no refresh
 * token; a memory store is enough (every process can get its own token).
 *
 *   tsx examples/client-credentials.ts --issuer https://login.example.com --client-id my-service \
 *     --client-secret … --server https://api.example.com [--resource https://api.example.com] [--count 3]
 *   tsx examples/client-credentials.ts --help
 *
 * Without --issuer it runs against an in-process identity provider and example server.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createAuthInterceptor, createTokenManager } from "connect-oidc";
import { AgentSessionService } from "../gen/agent/v1/session_pb.js";
import { parseCli, runMain, usageError } from "./lib/cli.js";
import { isLoopback } from "./lib/login.js";
import { printTokenEvents } from "./lib/token-events.js";

function parseFlags() {
  return parseCli({
    command: "tsx examples/client-credentials.ts",
    synopsis: "[--issuer <url> --client-id <id> --client-secret <secret> --server <url>] [flags]",
    description:
      "A service without a user: tokens from the client credentials grant, a new one fetched before\n" +
      "the current one runs out. Opens a session, sends --count heartbeats 2 s apart, ends it.\n" +
      "Without --issuer it runs against an in-process identity provider and example server.",
    flags: {
      issuer: { type: "string", kind: "url", env: "OIDC_ISSUER", help: "the OIDC issuer (default: an embedded one)" },
      "client-id": { type: "string", value: "<id>", env: "OIDC_CLIENT_ID", help: "this service's client id (required with --issuer)" },
      "client-secret": { type: "string", value: "<secret>", env: "OIDC_CLIENT_SECRET", help: "its client secret (required with --issuer)" },
      server: { type: "string", kind: "url", env: "AGENT_SERVER_URL", help: "the AgentSessionService base URL (required with --issuer)" },
      resource: { type: "string", kind: "uri", help: "the resource indicator (RFC 8707) to ask tokens for" },
      count: { type: "string", kind: "integer", min: 1, default: "3", help: "heartbeats to send" },
    },
    example:
      "tsx examples/client-credentials.ts --issuer https://login.example.com --client-id my-service --client-secret s3cret --server https://api.example.com",
  });
}

async function main(): Promise<number> {
  const { values } = parseFlags();
  if (values.issuer !== undefined) {
    for (const name of ["client-id", "client-secret", "server"] as const) {
      if (!values[name]) usageError(`--${name} is required with --issuer`);
    }
  }

  const cleanup: Array<() => Promise<void>> = [];
  try {
    return await run(values, cleanup);
  } finally {
    for (const close of cleanup) await close();
  }
}

async function run(values: ReturnType<typeof parseFlags>["values"], cleanup: Array<() => Promise<void>>): Promise<number> {
  let { issuer, server } = values;
  let clientId = values["client-id"];
  let clientSecret = values["client-secret"];
  if (issuer === undefined) {
    // The embedded setup: tokens live 4 s, so the run shows a refresh.
    const { startTestIdentityProvider } = await import("connect-oidc/testing");
    const { startExampleServer } = await import("./server.js");
    const idp = await startTestIdentityProvider({ accessTokenTtl: 4 });
    cleanup.push(() => idp.close());
    const api = await startExampleServer({ issuer: idp.issuer, audience: idp.audience, jwksUri: idp.jwksUri });
    cleanup.unshift(() => api.close());
    ({ issuer } = idp);
    ({ clientId, clientSecret } = idp.serviceClient);
    server = api.url;
    process.stderr.write(`Embedded identity provider ${issuer} and server ${server}\n`);
  }
  if (!clientId || !clientSecret || !server) usageError("--client-id, --client-secret and --server are required with --issuer");

  const tokens = createTokenManager({
    issuer,
    clientId,
    clientSecret,
    grant: "client_credentials",
    ...(values.resource !== undefined ? { resource: values.resource } : {}),
    allowInsecureRequests: isLoopback(issuer),
    onEvent: printTokenEvents(),
  });
  const client = createClient(
    AgentSessionService,
    createConnectTransport({ baseUrl: server, httpVersion: "1.1", interceptors: [createAuthInterceptor(tokens)] }),
  );

  try {
    const { sessionId } = await client.createSession({ agentName: "example-service" });
    for (let i = 1; i <= Number(values.count); i++) {
      if (i > 1) await sleep(2000);
      await client.heartbeat({ sessionId });
      process.stderr.write(`heartbeat ${i} ok\n`);
    }
    await client.endSession({ sessionId });
    process.stdout.write(`session ${sessionId}: ${values.count} heartbeats sent, ended\n`);
    return 0;
  } finally {
    tokens.close();
  }
}

runMain("client-credentials", main);

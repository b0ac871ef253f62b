/**
 * A service without a user: it gets its tokens with the client credentials grant, and the
 * token manager fetches a new one before the current one runs out. No login, no refresh
 * token; a memory store is enough (every process can get its own token).
 *
 *   tsx examples/client-credentials.ts --issuer https://login.example.com --client-id my-service \
 *     --client-secret … --server https://api.example.com [--resource https://api.example.com] [--count 3]
 *
 * Without --issuer it runs against an in-process identity provider and example server.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createAuthInterceptor, createTokenManager } from "connect-oidc";
import { AgentSessionService } from "../gen/agent/v1/session_pb.js";
import { isLoopback } from "./lib/login.js";
import { printTokenEvents } from "./lib/token-events.js";

const { values } = parseArgs({
  options: {
    issuer: { type: "string", default: process.env.OIDC_ISSUER },
    "client-id": { type: "string", default: process.env.OIDC_CLIENT_ID },
    "client-secret": { type: "string", default: process.env.OIDC_CLIENT_SECRET },
    server: { type: "string", default: process.env.AGENT_SERVER_URL },
    resource: { type: "string" },
    count: { type: "string", default: "3" },
  },
});

const cleanup: Array<() => Promise<void>> = [];
let { issuer, server } = values;
let clientId = values["client-id"];
let clientSecret = values["client-secret"];
if (issuer === undefined) {
  // The embedded setup: tokens live 4 s, so the run shows a refresh.
  const { startIdp } = await import("../test/support/idp.js");
  const { startExampleServer } = await import("./server.js");
  const idp = await startIdp({ accessTokenTtl: 4 });
  const api = await startExampleServer({ issuer: idp.issuer, audience: idp.audience, jwksUri: idp.jwksUri });
  cleanup.push(() => api.close(), () => idp.close());
  ({ issuer } = idp);
  ({ clientId, clientSecret } = idp.serviceClient);
  server = api.url;
  process.stderr.write(`Embedded identity provider ${issuer} and server ${server}\n`);
}
if (!clientId || !clientSecret || !server) {
  process.stderr.write("usage: tsx examples/client-credentials.ts --issuer <url> --client-id <id> --client-secret <secret> --server <url>\n");
  process.exit(2);
}

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
} finally {
  tokens.close();
  for (const close of cleanup) await close();
}

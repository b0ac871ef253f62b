/**
 * The library itself never writes to stdout or stderr: a whole life (login, proactive
 * and forced refreshes, an IdP outage, a dead refresh token, a failed call) in a child
 * process prints nothing.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { it } from "node:test";

const script = `
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { EchoService } from "./gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager } from "./src/index.js";
import { startIdp } from "./test/support/idp.js";
import { createManualClock } from "./test/support/manual-clock.js";
import { startServer } from "./test/support/server.js";

const idp = await startIdp({ accessTokenTtl: 3600 });
const server = await startServer({ idp, http2: false });
const clock = createManualClock();
const events = [];
const tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true, clock, onEvent: (e) => events.push(e.type) });
const client = createClient(EchoService, createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(tokens)] }));
const login = await idp.login();
await tokens.setTokens(login);
await client.say({ text: "a" });
await clock.advance(50 * 60_000);          // proactive refresh
await new Promise((r) => setTimeout(r, 300));
server.revoke(await tokens.getAccessToken());
await client.say({ text: "b" });            // forced refresh + retry
idp.setTokenOutage(503);
await clock.advance(2 * 3600_000);          // expired, IdP down
await client.say({ text: "c" }).catch(() => {});
idp.setTokenOutage(undefined);
await idp.revokeGrant();
await clock.advance(120_000);
await client.say({ text: "d" }).catch(() => {}); // dead refresh token
tokens.close();
await server.close();
await idp.close();
process.exitCode = events.includes("refreshed") && events.includes("refresh-failed") && events.includes("reauth-required") ? 0 : 3;
`;

it("prints nothing to stdout or stderr through refreshes, failures and re-login", () => {
  const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(child.status, 0, `exit ${child.status}: ${child.stderr}`);
  assert.equal(child.stdout, "");
  assert.equal(child.stderr, "");
});

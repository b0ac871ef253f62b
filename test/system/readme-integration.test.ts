import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createAuthInterceptor, createTokenManager } from "connect-oidc";
import { verifiedTokenKey } from "connect-oidc/server";
import { startTestIdentityProvider, startTestServer } from "connect-oidc/testing";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";

test("the generated client calls the server with a login, and not without", async () => {
  await using idp = await startTestIdentityProvider({ accessTokenTtl: 5 });
  await using server = await startTestServer({
    identityProvider: idp,
    routes: (router) =>
      router.service(EchoService, {
        say: (req, ctx) => ({ text: req.text, subject: ctx.values.get(verifiedTokenKey)?.subject ?? "" }),
      }),
  });
  using tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
  await tokens.setTokens(await idp.login());
  const transport = (interceptors = [createAuthInterceptor(tokens)]) =>
    createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors });

  const reply = await createClient(EchoService, transport()).say({ text: "hi" });
  assert.deepEqual([reply.text, reply.subject], ["hi", idp.accountId]);

  const anonymous = createClient(EchoService, transport([]));
  await assert.rejects(anonymous.say({ text: "hi" }), (e) => ConnectError.from(e).code === Code.Unauthenticated);
});

/**
 * DPoP nonces for a fleet without shared storage (connect-oidc/server's createDPoPNonces): real
 * connect-node servers given the same secret accept each other's nonce; a server with another
 * secret refuses it with `use_dpop_nonce` and its own nonce; our DPoP client passes on every
 * server. Proofs are made by hand (jose) for the login's key, so the test chooses the nonce.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { generateKeyPair } from "jose";
import * as oidc from "openid-client";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager } from "../../src/index.js";
import { createDPoPNonces } from "../../src/server.js";
import { createProofSigner, type ProofSigner } from "../support/dpop-proof.js";
import { type Idp, startIdp, type TokenResponse } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { startServer, type TestServer } from "../support/server.js";
import { type Kind, transportFor } from "../support/transports.js";

describe("DPoP nonces across a fleet (shared secret, no shared storage)", () => {
  const fleetSecret = randomBytes(32);
  let idp: Idp;
  let login: TokenResponse;
  let owner: ProofSigner;
  const servers: Record<"a" | "b" | "other", { h1: TestServer; h2: TestServer }> = {} as never;
  const leaks = createLeakScanner();

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600, dpop: {} });
    const start = async (secret: Uint8Array) => {
      const dpop = { nonces: createDPoPNonces({ secret, stepSeconds: 60 }) };
      const [h1, h2] = await Promise.all([startServer({ idp, http2: false, dpop }), startServer({ idp, http2: true, dpop })]);
      return { h1, h2 };
    };
    [servers.a, servers.b, servers.other] = await Promise.all([start(fleetSecret), start(fleetSecret), start(randomBytes(32))]);
    const keys = await generateKeyPair("ES256");
    login = await idp.login({ dpop: oidc.getDPoPHandle(await idp.cliConfig(), keys) });
    leaks.remember(login.access_token, login.refresh_token);
    owner = await createProofSigner(keys);
  });
  after(async () => {
    await Promise.all(Object.values(servers).flatMap((s) => [s.h1.close(), s.h2.close()]));
    await idp?.close();
  });

  /** One Say call with a hand-made proof carrying `nonce`; the refusal's challenge and nonce. */
  const call = async (kind: Kind, server: { h1: TestServer; h2: TestServer }, nonce: string | undefined) => {
    const prove: Interceptor = (next) => async (req) => {
      req.header.set("authorization", `DPoP ${login.access_token}`);
      req.header.set("dpop", await owner.sign({ htm: req.requestMethod, htu: req.url, accessToken: login.access_token, nonce }));
      return next(req);
    };
    try {
      await createClient(EchoService, transportFor(kind, server.h1, server.h2, [prove])).say({ text: "hi" });
      return { ok: true } as const;
    } catch (error) {
      const e = ConnectError.from(error);
      leaks.assertClean(e, "refusal");
      return { ok: false, code: e.code, challenge: e.metadata.get("www-authenticate"), nonce: e.metadata.get("dpop-nonce") } as const;
    }
  };

  for (const kind of ["connect-h1", "grpc", "grpc-web"] as const) {
    it(`${kind}: a nonce from one server passes on another with the same secret, not on one with another secret`, async () => {
      const first = await call(kind, servers.a, undefined);
      assert.equal(first.ok, false);
      assert.equal(first.ok === false && first.challenge, 'DPoP error="use_dpop_nonce", error_description="nonce-missing"');
      const nonce = first.ok === false ? (first.nonce ?? undefined) : undefined;
      assert.ok(nonce, "the refusal carries the server's nonce");
      assert.deepEqual(await call(kind, servers.b, nonce), { ok: true }, "the fleet agrees");
      const other = await call(kind, servers.other, nonce);
      assert.equal(other.ok, false);
      if (other.ok === false) {
        assert.equal(other.code, Code.Unauthenticated);
        assert.equal(other.challenge, 'DPoP error="use_dpop_nonce", error_description="nonce-stale"');
        assert.ok(other.nonce && other.nonce !== nonce, "the other server answers with its own nonce");
        assert.deepEqual(await call(kind, servers.other, other.nonce), { ok: true });
      }
    });
  }

  it("our DPoP client passes on each server, learning each one's nonce", async () => {
    const tokens = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.serviceClient.clientId,
      clientSecret: idp.serviceClient.clientSecret,
      grant: "client_credentials",
      scope: "api",
      dpop: true,
      allowInsecureRequests: true,
    });
    try {
      for (const server of Object.values(servers)) {
        const client = createClient(EchoService, transportFor("connect-h2", server.h1, server.h2, [createAuthInterceptor(tokens)]));
        assert.equal((await client.say({ text: "fleet" })).text, "fleet");
      }
    } finally {
      tokens.close();
    }
  });
});

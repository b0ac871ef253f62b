/**
 * Clients that are not connect-oidc's, against a server built with `connect-oidc/testing`'s
 * `startTestServer` (connect-node behind `connect-oidc/server`), with tokens from the test
 * identity provider:
 * - openid-client's `fetchProtectedResource` with DPoP, a JSON POST to a unary Connect method:
 *   it meets the server's nonce challenge, retries, and passes; without DPoP it is refused;
 * - @grpc/grpc-js (a generic client, protobuf-es serializers, no codegen) with bearer metadata
 *   over h2c: passes with a token, answers UNAUTHENTICATED (16) with the challenge in its
 *   metadata without one or with a bad one, with and without the early-refusal wrapper;
 * - the theft cases, with proofs made by hand (jose): a replayed proof, a proof for another
 *   URL or method, a bound token used as a bearer token, a proof from another key, a proof
 *   made long ago, a proof without the server's nonce — each refused with its challenge.
 * connect-web in Chromium: test/system/interop-browser.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { generateKeyPair } from "jose";
import * as oidc from "openid-client";
import {
  type SayRequest,
  SayRequestSchema,
  type SayResponse,
  SayResponseSchema,
  EchoService,
} from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createDPoPNonces, verifiedTokenKey } from "../../src/server.js";
import { startTestIdentityProvider, startTestServer, type TestIdentityProvider, type TestServer } from "../../src/testing.js";
import { createProofSigner, type ProofSigner } from "../support/dpop-proof.js";
import { createLeakScanner } from "../support/leaks.js";

const leaks = createLeakScanner();
const SAY = "/connectoidc.test.v1.EchoService/Say";

const routes = (router: Parameters<Parameters<typeof startTestServer>[0]["routes"]>[0]) =>
  router.service(EchoService, {
    say: (req, ctx) => ({ text: req.text, subject: ctx.values.get(verifiedTokenKey)?.subject ?? "" }),
  });

/** A gRPC call from @grpc/grpc-js: the answer, or the error with its code and metadata. */
function grpcSay(address: string, metadata: grpc.Metadata, text: string) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise<{ readonly ok: true; readonly res: SayResponse } | { readonly ok: false; readonly error: grpc.ServiceError }>(
    (resolve) => {
      client.makeUnaryRequest(
        SAY,
        (req: SayRequest) => Buffer.from(toBinary(SayRequestSchema, req)),
        (bytes: Buffer) => fromBinary(SayResponseSchema, bytes),
        create(SayRequestSchema, { text }),
        metadata,
        { deadline: Date.now() + 10_000 },
        (error, res) => {
          client.close();
          resolve(error ? { ok: false, error } : { ok: true, res: res! });
        },
      );
    },
  );
}

function bearer(token: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

describe("@grpc/grpc-js with bearer metadata", () => {
  let idp: TestIdentityProvider;
  const servers: TestServer[] = [];
  let token: string;
  before(async () => {
    idp = await startTestIdentityProvider({ accessTokenTtl: 600 });
    for (const earlyRefusal of [true, false])
      servers.push(await startTestServer({ identityProvider: idp, http2: true, earlyRefusal, routes }));
    token = (await idp.login()).access_token;
    leaks.remember(token);
  });
  after(async () => {
    for (const server of servers) await server.close();
    await idp.close();
  });

  for (const [index, label] of ["with the early-refusal wrapper", "interceptor only"].entries()) {
    it(`${label}: passes with the token, UNAUTHENTICATED with a challenge without one or with a bad one`, async () => {
      const address = servers[index]!.baseUrl.replace("http://", "");
      const ok = await grpcSay(address, bearer(token), "hi");
      assert.ok(ok.ok, ok.ok ? "" : ok.error.message);
      assert.deepEqual([ok.res.text, ok.res.subject], ["hi", idp.accountId]);

      const cases: [grpc.Metadata, string][] = [
        [bearer(undefined), "Bearer"],
        [bearer("not-a-jwt"), 'Bearer error="invalid_token", error_description="opaque"'],
        [bearer(`${token.slice(0, -4)}AAAA`), 'Bearer error="invalid_token", error_description="bad-signature"'],
      ];
      for (const [metadata, challenge] of cases) {
        const refused = await grpcSay(address, metadata, "hi");
        assert.ok(!refused.ok, "refused");
        assert.equal(refused.error.code, grpc.status.UNAUTHENTICATED);
        assert.deepEqual(refused.error.metadata.get("www-authenticate"), [challenge]);
        leaks.assertClean(refused.error, "grpc-js error");
      }
    });
  }
});

describe("openid-client fetchProtectedResource with DPoP (a JSON POST to a unary Connect method)", () => {
  let idp: TestIdentityProvider;
  let server: TestServer;
  before(async () => {
    idp = await startTestIdentityProvider({ accessTokenTtl: 600, dpop: { requireNonce: true } });
    server = await startTestServer({ identityProvider: idp, dpop: { required: true, nonces: createDPoPNonces() }, routes });
  });
  after(async () => {
    await server.close();
    await idp.close();
  });

  const post = (config: oidc.Configuration, token: string, options?: oidc.DPoPOptions) =>
    oidc.fetchProtectedResource(
      config,
      token,
      new URL(`${server.baseUrl}${SAY}`),
      "POST",
      JSON.stringify({ text: "hi" }),
      new Headers({ "content-type": "application/json" }),
      options,
    );

  it("passes after the server's use_dpop_nonce challenge, which openid-client reads and retries", async () => {
    const config = await idp.cliConfig();
    const login = await idp.login({ dpop: true });
    leaks.remember(login.access_token, login.refresh_token);
    const res = await post(config, login.access_token, { DPoP: oidc.getDPoPHandle(config, login.dpopKey!.keyPair) });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { text: "hi", subject: idp.accountId });
    assert.equal(res.headers.get("dpop-nonce"), server.verifier.dpopNonce(), "a success carries the nonce too");
  });

  it("a bearer token (no DPoP) is refused: openid-client reports the server's DPoP invalid_token challenge (401)", async () => {
    const config = await idp.cliConfig();
    const { access_token } = await idp.login();
    const error = await post(config, access_token).then(
      () => assert.fail("accepted"),
      (err: unknown) => err,
    );
    assert.ok(error instanceof oidc.WWWAuthenticateChallengeError, String(error));
    assert.equal(error.status, 401);
    assert.deepEqual(
      error.cause.map((c) => [c.scheme, c.parameters.error, c.parameters.error_description]),
      [["dpop", "invalid_token", "malformed"]],
    );
    leaks.assertClean(error, "openid-client error");
  });
});

describe("theft: a DPoP-bound token without its owner's fresh proof is refused with the right challenge", () => {
  let idp: TestIdentityProvider;
  let server: TestServer;
  let token: string;
  let owner: ProofSigner;
  let thief: ProofSigner;
  const url = () => `${server.baseUrl}${SAY}`;

  before(async () => {
    idp = await startTestIdentityProvider({ accessTokenTtl: 600 });
    // DPoP allowed (not required): a bound token sent as a bearer token is refused as such.
    server = await startTestServer({ identityProvider: idp, dpop: { nonces: createDPoPNonces() }, routes });
    const login = await idp.login({ dpop: true });
    token = login.access_token;
    leaks.remember(token, login.refresh_token);
    owner = await createProofSigner(login.dpopKey!.keyPair);
    thief = await createProofSigner((await generateKeyPair("ES256")) as CryptoKeyPair);
  });
  after(async () => {
    await server.close();
    await idp.close();
  });

  const call = async (headers: Record<string, string>, target = url(), method = "POST") => {
    const res = await fetch(target, {
      method,
      headers: { "content-type": "application/json", ...headers },
      ...(method === "POST" ? { body: JSON.stringify({ text: "hi" }) } : {}),
    });
    const body = await res.text();
    leaks.assertClean(body, "response body");
    return { status: res.status, challenge: res.headers.get("www-authenticate"), nonce: res.headers.get("dpop-nonce"), body };
  };
  const ownerProof = (claims: Partial<Parameters<ProofSigner["sign"]>[0]> = {}) =>
    owner.sign({ htm: "POST", htu: url(), accessToken: token, nonce: server.verifier.dpopNonce(), ...claims });
  const dpopRefusal = (reason: string) => `DPoP error="invalid_dpop_proof", error_description="${reason}"`;

  it("the owner's fresh proof passes (the control)", async () => {
    const res = await call({ authorization: `DPoP ${token}`, dpop: await ownerProof() });
    assert.equal(res.status, 200, res.body);
    assert.equal((JSON.parse(res.body) as { subject: string }).subject, idp.accountId);
  });

  it("a replayed proof: invalid_dpop_proof (jti-replayed)", async () => {
    const proof = await ownerProof();
    assert.equal((await call({ authorization: `DPoP ${token}`, dpop: proof })).status, 200);
    const again = await call({ authorization: `DPoP ${token}`, dpop: proof });
    assert.deepEqual([again.status, again.challenge], [401, dpopRefusal("jti-replayed")]);
  });

  it("a proof for another URL or another method: invalid_dpop_proof (htu-mismatch, htm-mismatch)", async () => {
    const otherUrl = await call({
      authorization: `DPoP ${token}`,
      dpop: await ownerProof({ htu: `${server.baseUrl}/connectoidc.test.v1.EchoService/Collect` }),
    });
    assert.deepEqual([otherUrl.status, otherUrl.challenge], [401, dpopRefusal("htu-mismatch")]);
    const otherMethod = await call({ authorization: `DPoP ${token}`, dpop: await ownerProof({ htm: "GET" }) });
    assert.deepEqual([otherMethod.status, otherMethod.challenge], [401, dpopRefusal("htm-mismatch")]);
  });

  it("the bound token as a bearer token: invalid_token (bound-token-as-bearer)", async () => {
    const res = await call({ authorization: `Bearer ${token}` });
    assert.deepEqual([res.status, res.challenge], [401, 'Bearer error="invalid_token", error_description="bound-token-as-bearer"']);
  });

  it("a proof from another key: invalid_dpop_proof (jkt-mismatch)", async () => {
    const proof = await thief.sign({ htm: "POST", htu: url(), accessToken: token, nonce: server.verifier.dpopNonce() });
    const res = await call({ authorization: `DPoP ${token}`, dpop: proof });
    assert.deepEqual([res.status, res.challenge], [401, dpopRefusal("jkt-mismatch")]);
  });

  it("a proof made ten minutes ago (stale iat): invalid_dpop_proof (iat-outside-window)", async () => {
    const res = await call({ authorization: `DPoP ${token}`, dpop: await ownerProof({ iat: Math.floor(Date.now() / 1000) - 600 }) });
    assert.deepEqual([res.status, res.challenge], [401, dpopRefusal("iat-outside-window")]);
  });

  it("a proof without the server's nonce: use_dpop_nonce, with the nonce to use", async () => {
    const res = await call({ authorization: `DPoP ${token}`, dpop: await owner.sign({ htm: "POST", htu: url(), accessToken: token }) });
    assert.deepEqual([res.status, res.challenge], [401, 'DPoP error="use_dpop_nonce", error_description="nonce-missing"']);
    assert.equal(res.nonce, server.verifier.dpopNonce());
    const code = ConnectError.from(new ConnectError("", Code.Unauthenticated)).code;
    assert.equal((JSON.parse(res.body) as { code: string }).code, Code[code].toLowerCase());
  });
});

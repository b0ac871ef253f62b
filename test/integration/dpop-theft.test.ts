/**
 * Stolen DPoP-bound tokens are worthless (RFC 9449 §7, §5): a real oidc-provider issues a
 * DPoP-bound login (the proofs made by openid-client's `getDPoPHandle`), and real connect-node
 * DPoP servers (HTTP/1.1 and HTTP/2, nonces required) refuse what a thief can send: the access
 * token as a bearer, with a proof from the thief's own key, with a proof seen on the wire
 * (replayed), with a proof for another URL or method, with a proof made long ago; and the
 * refresh token without the key. The owner's request passes on every transport, so each
 * refusal is the server telling a thief from the owner. Nothing here uses connect-oidc's own
 * DPoP code: proofs are made by hand (jose) or by openid-client.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { generateKeyPair } from "jose";
import * as oidc from "openid-client";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createProofSigner, type ProofClaims, type ProofSigner } from "../support/dpop-proof.js";
import { type Idp, startIdp, type TokenResponse } from "../support/idp.js";
import { createLeakScanner } from "../support/leaks.js";
import { type RecordedRequest, startServer, type TestServer } from "../support/server.js";
import { KINDS, type Kind, serverFor, transportFor } from "../support/transports.js";
import { bounded } from "../support/dpop-attempt-budget.js";

/** What one call sends: the authorization header and the proof for the request it is on. */
type Credentials = (request: { readonly method: string; readonly url: string; readonly nonce: string | undefined }) => Promise<{
  readonly authorization: string;
  readonly dpop?: string;
}>;

/** The outcome of one call: "ok", or the code and challenge of its refusal. */
interface Outcome {
  readonly result: "ok" | "refused";
  readonly code?: Code;
  readonly challenge?: string | null;
  readonly nonce?: string | null;
}

describe("DPoP theft (real IdP, real DPoP servers, every transport)", () => {
  let idp: Idp;
  let h1: TestServer;
  let h2: TestServer;
  let owner: ProofSigner;
  let thief: ProofSigner;
  let ownerKeys: CryptoKeyPair;
  let login: TokenResponse;
  let ownerJkt: string;
  const leaks = createLeakScanner();
  const seen: unknown[] = [];

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600, dpop: { requireNonce: true } });
    h1 = await startServer({ idp, http2: false, dpop: { requireNonce: true } });
    h2 = await startServer({ idp, http2: true, dpop: { requireNonce: true } });
    ownerKeys = await generateKeyPair("ES256");
    const handle = oidc.getDPoPHandle(await idp.cliConfig(), ownerKeys);
    ownerJkt = await handle.calculateThumbprint();
    login = await idp.login({ dpop: handle });
    leaks.remember(login.access_token, login.refresh_token);
    owner = await createProofSigner(ownerKeys);
    thief = await createProofSigner((await generateKeyPair("ES256")) as CryptoKeyPair);
  });
  after(async () => {
    // Servers closed first: a failed check must not leave a listener keeping the run alive.
    await h1.close();
    await h2.close();
    await idp.close();
    for (const value of seen) leaks.assertClean(value, "server record or error");
  });

  it("the IdP bound the login to the owner's key", bounded, () => {
    assert.equal(login.token_type.toLowerCase(), "dpop");
    const cnf = JSON.parse(Buffer.from(login.access_token.split(".")[1] ?? "", "base64url").toString()).cnf;
    assert.deepEqual(cnf, { jkt: ownerJkt });
    assert.equal(idp.stats.errors.use_dpop_nonce, 1, "the IdP demanded its nonce once; openid-client retried with it");
  });

  // Each kind's server hands out its own nonces; a client learns them from any answer.
  const nonces = new Map<TestServer, string>();

  /** One Say call on `kind` with what `credentials` sends; the server's record of it. */
  async function call(
    kind: Kind,
    credentials: Credentials,
    method: "say" | "countdown" = "say",
  ): Promise<Outcome & { record: RecordedRequest }> {
    const server = serverFor(kind, h1, h2);
    const before = server.stats.requests.length;
    const sender: Interceptor = (next) => async (req) => {
      const sent = await credentials({ method: req.requestMethod, url: req.url, nonce: nonces.get(server) });
      req.header.set("authorization", sent.authorization);
      if (sent.dpop !== undefined) req.header.set("dpop", sent.dpop);
      const res = await next(req);
      const nonce = res.header.get("dpop-nonce");
      if (nonce) nonces.set(server, nonce);
      return res;
    };
    const client = createClient(EchoService, transportFor(kind, h1, h2, [sender]));
    let outcome: Outcome;
    try {
      if (method === "say") await client.say({ text: "hello" });
      else for await (const _ of client.countdown({ text: "hello", count: 2 }));
      outcome = { result: "ok" };
    } catch (err) {
      seen.push(err);
      const error = ConnectError.from(err);
      const nonce = error.metadata.get("dpop-nonce");
      if (nonce) nonces.set(server, nonce);
      outcome = { result: "refused", code: error.code, challenge: error.metadata.get("www-authenticate"), nonce };
    }
    const records = server.stats.requests.slice(before);
    assert.equal(records.length, 1, "one HTTP request per call");
    const record = records[0] as RecordedRequest;
    seen.push({ ...record, body: undefined, done: undefined });
    return { ...outcome, record };
  }

  const dpopToken = "DPoP ";
  /** The owner's request: its token, a fresh proof of its key for this exact request. */
  const asOwner =
    (overrides: Partial<ProofClaims> = {}): Credentials =>
    async ({ method, url, nonce }) => ({
      authorization: `${dpopToken}${login.access_token}`,
      dpop: await owner.sign({ htm: method, htu: url, accessToken: login.access_token, nonce, ...overrides }),
    });

  /** The owner's request with a nonce of the test's choosing. */
  const asOwnerWith =
    (nonce: string | undefined): Credentials =>
    async ({ method, url }) => ({
      authorization: `${dpopToken}${login.access_token}`,
      dpop: await owner.sign({ htm: method, htu: url, accessToken: login.access_token, nonce }),
    });

  for (const kind of KINDS) {
    describe(kind, () => {
      it("the owner passes once it has the server's nonce; without it the answer is use_dpop_nonce with the nonce", bounded, async () => {
        nonces.delete(serverFor(kind, h1, h2));
        const first = await call(kind, asOwner());
        assert.equal(first.result, "refused");
        assert.equal(first.code, Code.Unauthenticated);
        assert.equal(first.challenge, 'DPoP error="use_dpop_nonce", error_description="nonce-missing"');
        assert.ok(first.nonce, "DPoP-Nonce in the refusal");
        assert.deepEqual(first.record.dpop, { ok: false, reason: "nonce-missing", jkt: ownerJkt });

        const second = await call(kind, asOwner());
        assert.equal(second.result, "ok");
        assert.deepEqual(second.record.dpop, { ok: true, jkt: ownerJkt, nonce: first.nonce });
        assert.equal(second.record.auth, "accepted");
        const stream = await call(kind, asOwner(), "countdown");
        assert.equal(stream.result, "ok", "server-streaming too");
      });

      it("the access token replayed as a bearer is refused, with or without the owner's proof", bounded, async () => {
        const bare = await call(kind, async () => ({ authorization: `Bearer ${login.access_token}` }));
        assert.deepEqual(
          [bare.result, bare.code, bare.challenge],
          ["refused", Code.Unauthenticated, 'DPoP error="invalid_token", error_description="malformed"'],
        );
        assert.deepEqual(bare.record.dpop, { ok: false, reason: "not-dpop-scheme" });
        const withProof = await call(kind, async (request) => ({
          ...(await asOwner()(request)),
          authorization: `Bearer ${login.access_token}`,
        }));
        assert.equal(withProof.result, "refused");
        assert.deepEqual(withProof.record.dpop, { ok: false, reason: "not-dpop-scheme" });
        assert.equal((await call(kind, asOwner())).result, "ok", "the owner still passes");
      });

      it("the access token with a proof from the thief's own key is refused", bounded, async () => {
        const stolen = await call(kind, async ({ method, url, nonce }) => ({
          authorization: `${dpopToken}${login.access_token}`,
          dpop: await thief.sign({ htm: method, htu: url, accessToken: login.access_token, nonce }),
        }));
        assert.equal(stolen.result, "refused");
        assert.equal(stolen.challenge, 'DPoP error="invalid_dpop_proof", error_description="jkt-mismatch"');
        assert.notEqual(stolen.record.dpop?.jkt, ownerJkt);
      });

      it("a proof seen on the wire, sent again, is refused (jti replay)", bounded, async () => {
        let captured: string | undefined;
        const capture: Credentials = async (request) => {
          const sent = await asOwner()(request);
          captured = sent.dpop;
          return sent;
        };
        assert.equal((await call(kind, capture)).result, "ok");
        const replayed = await call(kind, async () => ({ authorization: `${dpopToken}${login.access_token}`, dpop: captured }));
        assert.equal(replayed.result, "refused");
        assert.equal(replayed.challenge, 'DPoP error="invalid_dpop_proof", error_description="jti-replayed"');
      });

      it("a proof for another URL or another method is refused", bounded, async () => {
        const otherPath = await call(kind, async (request) => asOwner({ htu: request.url.replace("/Say", "/Countdown") })(request));
        assert.equal(otherPath.challenge, 'DPoP error="invalid_dpop_proof", error_description="htu-mismatch"');
        const otherHost = await call(kind, async (request) => asOwner({ htu: request.url.replace("127.0.0.1", "localhost") })(request));
        assert.equal(otherHost.challenge, 'DPoP error="invalid_dpop_proof", error_description="htu-mismatch"');
        const otherMethod = await call(kind, asOwner({ htm: "GET" }));
        assert.equal(otherMethod.challenge, 'DPoP error="invalid_dpop_proof", error_description="htm-mismatch"');
        for (const refused of [otherPath, otherHost, otherMethod]) assert.equal(refused.code, Code.Unauthenticated);
      });

      it("a proof made long ago (stale iat) is refused", bounded, async () => {
        const stale = await call(kind, asOwner({ iat: Math.floor(Date.now() / 1000) - 300 }));
        assert.equal(stale.challenge, 'DPoP error="invalid_dpop_proof", error_description="iat-outside-window"');
        const future = await call(kind, asOwner({ iat: Math.floor(Date.now() / 1000) + 300 }));
        assert.equal(future.challenge, 'DPoP error="invalid_dpop_proof", error_description="iat-outside-window"');
      });
    });
  }

  it("server nonces rotate (rotateNonce, nonceRotateMs): the previous one still passes, answers carry the new one", bounded, async () => {
    const server = h1;
    const old = server.dpop.currentNonce;
    assert.ok(old);
    server.dpop.rotateNonce();
    const fresh = server.dpop.currentNonce;
    assert.notEqual(fresh, old);
    const withPrevious = await call("connect-h1", asOwnerWith(old));
    assert.equal(withPrevious.result, "ok", "the previous nonce still passes");
    assert.equal(nonces.get(server), fresh, "the answer carried the new nonce");
    server.dpop.rotateNonce();
    const stale = await call("connect-h1", asOwnerWith(old));
    assert.deepEqual(
      [stale.result, stale.challenge, stale.nonce],
      ["refused", 'DPoP error="use_dpop_nonce", error_description="nonce-stale"', server.dpop.currentNonce],
    );

    const timed = await startServer({ idp, http2: true, dpop: { requireNonce: true, nonceRotateMs: 200 } });
    try {
      const first = timed.dpop.currentNonce;
      await new Promise((resolve) => setTimeout(resolve, 250));
      assert.notEqual(timed.dpop.currentNonce, first, "rotated after nonceRotateMs");
    } finally {
      await timed.close();
    }
  });

  it("openid-client's own proofs (fetchProtectedResource) pass, after a nonce challenge it reads and retries", bounded, async () => {
    const config = await idp.cliConfig();
    const handle = oidc.getDPoPHandle(config, ownerKeys);
    const url = new URL(`${h1.baseUrl}/connectoidc.test.v1.EchoService/Say`);
    const before = h1.stats.requests.length;
    const res = await oidc.fetchProtectedResource(
      config,
      login.access_token,
      url,
      "POST",
      JSON.stringify({ text: "hi" }),
      new Headers({ "content-type": "application/json" }),
      { DPoP: handle },
    );
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { subject?: string }).subject, idp.accountId);
    assert.ok(res.headers.get("dpop-nonce"));
    const records = h1.stats.requests.slice(before);
    assert.deepEqual(
      records.map((r) => r.dpop?.reason ?? (r.dpop?.ok ? "ok" : "?")),
      ["nonce-missing", "ok"],
      "openid-client took the challenge for a nonce error and retried once with the nonce",
    );
  });

  it("the refresh token is bound too: without the key, or with the thief's, the IdP refuses it", bounded, async () => {
    const config = await idp.cliConfig();
    const refreshToken = login.refresh_token as string;
    const attempts = [
      () => oidc.refreshTokenGrant(config, refreshToken),
      async () =>
        oidc.refreshTokenGrant(config, refreshToken, undefined, {
          DPoP: oidc.getDPoPHandle(config, (await generateKeyPair("ES256")) as CryptoKeyPair),
        }),
    ];
    for (const attempt of attempts) {
      const error = await attempt().then(
        () => undefined,
        (err: unknown) => err as { error?: string },
      );
      assert.equal(error?.error, "invalid_grant");
    }
    // The owner's key still refreshes: the refusals were about the key, not a dead grant.
    const fresh = await oidc.refreshTokenGrant(config, refreshToken, undefined, { DPoP: oidc.getDPoPHandle(config, ownerKeys) });
    leaks.remember(fresh.access_token, fresh.refresh_token);
    assert.equal(fresh.token_type.toLowerCase(), "dpop");
  });
});

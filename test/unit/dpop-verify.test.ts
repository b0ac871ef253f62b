/**
 * The test resource server's DPoP proof check (test/support/dpop-verify.ts) and its nonces
 * (dpop-nonces.ts), against proofs made with jose: each rule refuses the proof that breaks
 * it and only that one, and a correct proof passes.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from "jose";
import { createDpopNonces } from "../support/dpop-nonces.js";
import { createProofSigner, type ProofClaims, type ProofSigner } from "../support/dpop-proof.js";
import { accessTokenHash, createDpopVerifier, type DpopProofInput, dpopTokenOf } from "../support/dpop-verify.js";
import { createLeakScanner } from "../support/leaks.js";
import { bounded } from "../support/dpop-attempt-budget.js";

const URL_SAY = "http://127.0.0.1:4000/connectoidc.test.v1.EchoService/Say";
const TOKEN = `eyJhbGciOiJSUzI1NiJ9.${"a".repeat(40)}.${"s".repeat(40)}`;
const NOW = 1_800_000_000;

async function setup(alg = "ES256") {
  const keys = await generateKeyPair(alg, { extractable: true });
  const signer = await createProofSigner(keys, alg);
  const jkt = await calculateJwkThumbprint(signer.jwk);
  return { keys, signer, jkt };
}

function claims(overrides: Partial<ProofClaims> = {}): ProofClaims {
  return { htm: "POST", htu: URL_SAY, accessToken: TOKEN, iat: NOW, ...overrides };
}

function input(proof: string | null, jkt: string | undefined, overrides: Partial<DpopProofInput> = {}): DpopProofInput {
  return { proof, accessToken: TOKEN, boundJkt: jkt, method: "POST", url: URL_SAY, ...overrides };
}

async function refusalOf(signer: ProofSigner, jkt: string, proofClaims: ProofClaims, overrides: Partial<DpopProofInput> = {}) {
  const verifier = createDpopVerifier({ nowSeconds: () => NOW });
  const result = await verifier.verify(input(await signer.sign(proofClaims), jkt, overrides));
  return result.ok ? "accepted" : result.reason;
}

describe("dpop-verify: the proof check", () => {
  it("accepts a correct proof and names its key's RFC 7638 thumbprint", bounded, async () => {
    const { signer, jkt } = await setup();
    const verifier = createDpopVerifier({ nowSeconds: () => NOW });
    const result = await verifier.verify(input(await signer.sign(claims()), jkt));
    assert.deepEqual(result, { ok: true, jkt, nonce: undefined });
  });

  it("accepts RSA (PS256) and Ed25519 keys too", bounded, async () => {
    for (const alg of ["PS256", "Ed25519"]) {
      const { signer, jkt } = await setup(alg);
      assert.equal(await refusalOf(signer, jkt, claims()), "accepted", alg);
    }
  });

  it("refuses a missing, repeated or malformed proof", bounded, async () => {
    const { signer, jkt } = await setup();
    const verifier = createDpopVerifier({ nowSeconds: () => NOW });
    const proof = await signer.sign(claims());
    const reasons = [];
    for (const p of [null, "", `${proof}, ${await signer.sign(claims())}`, "not-a-jws", proof.slice(0, -4)]) {
      const result = await verifier.verify(input(p, jkt));
      reasons.push(result.ok ? "accepted" : result.reason);
    }
    assert.deepEqual(reasons, ["missing-proof", "missing-proof", "multiple-proofs", "malformed-proof", "bad-signature"]);
  });

  it("refuses a wrong typ, a symmetric alg, a signature by another key, a private key in the header", bounded, async () => {
    const { keys, signer, jkt } = await setup();
    assert.equal(await refusalOf(signer, jkt, claims({ typ: "JWT" })), "wrong-typ");

    const payload = { htm: "POST", htu: URL_SAY, jti: randomUUID(), ath: accessTokenHash(TOKEN) };
    const secret = new TextEncoder().encode("x".repeat(32));
    const hs = await new SignJWT(payload)
      .setProtectedHeader({ alg: "HS256", typ: "dpop+jwt", jwk: signer.jwk })
      .setIssuedAt(NOW)
      .sign(secret);
    const other = await generateKeyPair("ES256");
    const forged = await new SignJWT(payload)
      .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: signer.jwk })
      .setIssuedAt(NOW)
      .sign(other.privateKey);
    const privateJwk = await exportJWK(keys.privateKey);
    const withPrivate = await new SignJWT(payload)
      .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: privateJwk })
      .setIssuedAt(NOW)
      .sign(keys.privateKey);
    const verifier = createDpopVerifier({ nowSeconds: () => NOW });
    const reasons = [];
    for (const proof of [hs, forged, withPrivate]) {
      const result = await verifier.verify(input(proof, jkt));
      reasons.push(result.ok ? "accepted" : result.reason);
    }
    assert.deepEqual(reasons, ["bad-alg", "bad-signature", "malformed-proof"]);
  });

  it("refuses a proof for another method or URL; a query on either side is ignored", bounded, async () => {
    const { signer, jkt } = await setup();
    assert.equal(await refusalOf(signer, jkt, claims({ htm: "GET" })), "htm-mismatch");
    assert.equal(await refusalOf(signer, jkt, claims({ htu: URL_SAY.replace("/Say", "/Countdown") })), "htu-mismatch");
    assert.equal(await refusalOf(signer, jkt, claims({ htu: URL_SAY.replace("4000", "4001") })), "htu-mismatch");
    assert.equal(await refusalOf(signer, jkt, claims({ htu: URL_SAY.replace("http:", "https:") })), "htu-mismatch");
    assert.equal(await refusalOf(signer, jkt, claims({ htu: "not a url" })), "htu-mismatch");
    assert.equal(await refusalOf(signer, jkt, claims({ htu: `${URL_SAY}?x=1#f` })), "accepted");
    assert.equal(await refusalOf(signer, jkt, claims({ htm: "GET" }), { method: "GET", url: `${URL_SAY}?message=abc` }), "accepted");
  });

  it("refuses an iat more than the window away, either way (60 s by default)", bounded, async () => {
    const { signer, jkt } = await setup();
    assert.equal(await refusalOf(signer, jkt, claims({ iat: NOW - 60 })), "accepted");
    assert.equal(await refusalOf(signer, jkt, claims({ iat: NOW + 60 })), "accepted");
    assert.equal(await refusalOf(signer, jkt, claims({ iat: NOW - 61 })), "iat-outside-window");
    assert.equal(await refusalOf(signer, jkt, claims({ iat: NOW + 61 })), "iat-outside-window");
    const narrow = createDpopVerifier({ nowSeconds: () => NOW, iatWindowSeconds: 5 });
    const result = await narrow.verify(input(await signer.sign(claims({ iat: NOW - 6 })), jkt));
    assert.equal(result.ok ? "accepted" : result.reason, "iat-outside-window");
  });

  it("refuses a proof for another token (ath), a token bound to another key, an unbound token", bounded, async () => {
    const { signer, jkt } = await setup();
    assert.equal(await refusalOf(signer, jkt, claims({ accessToken: `${TOKEN}x` })), "ath-mismatch");
    assert.equal(await refusalOf(signer, jkt, claims({ accessToken: undefined })), "ath-mismatch");
    const other = await setup();
    assert.equal(await refusalOf(signer, other.jkt, claims()), "jkt-mismatch");
    const verifier = createDpopVerifier({ nowSeconds: () => NOW });
    const unbound = await verifier.verify(input(await signer.sign(claims()), undefined));
    assert.equal(unbound.ok ? "accepted" : unbound.reason, "token-not-bound");
  });

  it("refuses a replayed proof (same jti), and forgets a jti once its proof is too old to pass", bounded, async () => {
    const { signer, jkt } = await setup();
    let now = NOW;
    const verifier = createDpopVerifier({ nowSeconds: () => now });
    const proof = await signer.sign(claims());
    assert.equal((await verifier.verify(input(proof, jkt))).ok, true);
    const replay = await verifier.verify(input(proof, jkt));
    assert.deepEqual(replay.ok ? "accepted" : [replay.reason, replay.error], ["jti-replayed", "invalid_dpop_proof"]);
    // Same jti in a new proof: still a replay.
    const again = await verifier.verify(input(await signer.sign(claims({ jti: "fixed" })), jkt));
    assert.equal(again.ok, true);
    const sameJti = await verifier.verify(input(await signer.sign(claims({ jti: "fixed" })), jkt));
    assert.equal(sameJti.ok ? "accepted" : sameJti.reason, "jti-replayed");
    assert.equal(verifier.replayCacheSize, 2);
    now += 121;
    const late = await verifier.verify(input(await signer.sign(claims({ iat: now })), jkt));
    assert.equal(late.ok, true);
    assert.equal(verifier.replayCacheSize, 1, "expired jtis dropped");
  });

  it("with nonces: a proof without one or with a stale one answers use_dpop_nonce; current and previous pass", bounded, async () => {
    const { signer, jkt } = await setup();
    let n = 0;
    const nonces = createDpopNonces({ newNonce: () => `nonce-${++n}` });
    const verifier = createDpopVerifier({ nowSeconds: () => NOW, nonces });
    const check = async (nonce: string | undefined) => {
      const result = await verifier.verify(input(await signer.sign(claims({ nonce })), jkt));
      return result.ok ? `ok ${result.nonce}` : `${result.error} ${result.reason}`;
    };
    assert.equal(nonces.current(), "nonce-1");
    assert.equal(await check(undefined), "use_dpop_nonce nonce-missing");
    assert.equal(await check("made-up"), "use_dpop_nonce nonce-stale");
    assert.equal(await check("nonce-1"), "ok nonce-1");
    nonces.rotate();
    assert.equal(nonces.current(), "nonce-2");
    assert.equal(await check("nonce-1"), "ok nonce-1", "the previous nonce still passes");
    nonces.rotate();
    assert.equal(await check("nonce-1"), "use_dpop_nonce nonce-stale");
    assert.equal(await check("nonce-3"), "ok nonce-3");
  });

  it("nonces rotate on their monotonic clock; after two idle periods the old one is stale too", bounded, () => {
    let ms = 0;
    let n = 0;
    const nonces = createDpopNonces({ rotateMs: 1000, nowMs: () => ms, newNonce: () => `n${++n}` });
    assert.equal(nonces.current(), "n1");
    ms = 999;
    assert.equal(nonces.current(), "n1");
    ms = 1000;
    assert.equal(nonces.current(), "n2");
    assert.equal(nonces.accepts("n1"), true);
    ms = 3500;
    assert.equal(nonces.accepts("n2"), false);
    assert.equal(nonces.current(), "n3");
  });

  it("reads the DPoP scheme only, and no result holds the proof or the token", bounded, async () => {
    assert.equal(dpopTokenOf(`DPoP ${TOKEN}`), TOKEN);
    assert.equal(dpopTokenOf(`dpop  ${TOKEN} `), TOKEN);
    assert.equal(dpopTokenOf(`Bearer ${TOKEN}`), undefined);
    assert.equal(dpopTokenOf(null), undefined);
    const { signer, jkt } = await setup();
    const scanner = createLeakScanner();
    const verifier = createDpopVerifier({ nowSeconds: () => NOW });
    for (const c of [claims(), claims({ htm: "GET" }), claims({ iat: 0 })]) {
      const proof = await signer.sign(c);
      scanner.remember(proof, TOKEN);
      scanner.assertClean(await verifier.verify(input(proof, jkt)), "result");
    }
  });
});

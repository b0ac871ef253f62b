/**
 * The library's DPoP proofs, keys and their stored form, unit by unit: every proof checked by
 * the test servers' jose-based verifier (signature, typ, embedded public key, htm, htu, iat,
 * ath, jti, nonce, cnf.jkt), for every algorithm; the thumbprint against jose's; the nonce
 * cache; the stored key (JWKs for stores that serialize, a non-extractable CryptoKeyPair in
 * memory) and how the stores read it back; a corrupt key never quoted.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader } from "jose";
import {
  base64url,
  DPOP_ALGORITHMS,
  dpopAlgorithm,
  generateDPoPKey,
  jwkThumbprint,
  keyPairOf,
  publicJwkOf,
  storedForm,
  storedJwkKey,
} from "../../src/dpop-key.js";
import { createNonceCache, createProofSigner, htuOf } from "../../src/dpop-proof.js";
import { ConfigurationError, TokenStoreError } from "../../src/errors.js";
import { keyringValueLimit } from "../../src/node/keyring-store.js";
import { parseStoredTokens, serializeStoredTokens } from "../../src/stored-tokens.js";
import { accessTokenHash, createDpopVerifier } from "../support/dpop-verify.js";
import { createDpopNonces } from "../support/dpop-nonces.js";
import { bounded } from "../support/dpop-attempt-budget.js";

const TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0LXVzZXIiLCJjbmYiOnt9fQ.c2lnbmF0dXJlLW9mLWEtdGVzdC10b2tlbg";
const URL_ = "https://api.example.com:8443/connectoidc.test.v1.EchoService/Say?encoding=json&message=x#frag";

describe("DPoP proofs", () => {
  for (const algorithm of DPOP_ALGORITHMS) {
    it(`${algorithm}: a proof the resource server's verifier accepts, with every claim RFC 9449 asks for`, bounded, async () => {
      const key = await generateDPoPKey(algorithm, false);
      const signer = await createProofSigner(algorithm, key.keyPair);
      const now = Math.floor(Date.now() / 1000);
      const proof = await signer.sign({ method: "POST", url: URL_, accessToken: TOKEN, nonce: "n-1" }, now + 0.7);

      const header = decodeProtectedHeader(proof);
      assert.equal(header.typ, "dpop+jwt");
      assert.equal(header.alg, algorithm);
      assert.equal((header.jwk as Record<string, unknown> | undefined)?.d, undefined, "no private key material in the header");
      assert.equal(await calculateJwkThumbprint(header.jwk as never), signer.thumbprint);
      const claims = decodeJwt(proof);
      assert.deepEqual(Object.keys(claims).sort(), ["ath", "htm", "htu", "iat", "jti", "nonce"]);
      assert.equal(claims.htm, "POST");
      assert.equal(claims.htu, "https://api.example.com:8443/connectoidc.test.v1.EchoService/Say");
      assert.equal(claims.iat, now);
      assert.equal(claims.ath, accessTokenHash(TOKEN));
      assert.equal(claims.nonce, "n-1");
      assert.match(String(claims.jti), /^[\w-]{22}$/);

      const verifier = createDpopVerifier();
      const result = await verifier.verify({ proof, accessToken: TOKEN, boundJkt: signer.thumbprint, method: "POST", url: URL_ });
      assert.deepEqual(result, { ok: true, jkt: signer.thumbprint, nonce: "n-1" });
    });
  }

  it("every proof is new (jti), names its own request, and fails anywhere else", bounded, async () => {
    const key = await generateDPoPKey("ES256", false);
    const signer = await createProofSigner("ES256", key.keyPair);
    const now = Date.now() / 1000;
    const a = await signer.sign({ method: "POST", url: "http://127.0.0.1:1/a/B", accessToken: TOKEN }, now);
    const b = await signer.sign({ method: "POST", url: "http://127.0.0.1:1/a/B", accessToken: TOKEN }, now);
    assert.notEqual(decodeJwt(a).jti, decodeJwt(b).jti);
    assert.equal(decodeJwt(a).nonce, undefined, "no nonce until a server sent one");
    const verifier = createDpopVerifier();
    const check = (proof: string, method: string, url: string) =>
      verifier.verify({ proof, accessToken: TOKEN, boundJkt: signer.thumbprint, method, url });
    assert.equal((await check(a, "GET", "http://127.0.0.1:1/a/B")).ok, false, "another method");
    assert.equal((await check(b, "POST", "http://127.0.0.1:1/a/C")).ok, false, "another path");
    assert.equal((await check(b, "POST", "http://127.0.0.1:2/a/B")).ok, false, "another origin");
    assert.equal((await check(a, "POST", "http://127.0.0.1:1/a/B")).ok, true);
    assert.equal((await check(a, "POST", "http://127.0.0.1:1/a/B")).ok, false, "replayed");
    const other = await createProofSigner("ES256", (await generateDPoPKey("ES256", false)).keyPair);
    const foreign = await other.sign({ method: "POST", url: "http://127.0.0.1:1/a/B", accessToken: TOKEN }, now);
    const refused = await check(foreign, "POST", "http://127.0.0.1:1/a/B");
    assert.equal(refused.ok ? "ok" : refused.reason, "jkt-mismatch");
  });

  it("a proof without a server nonce is refused by a nonce server; with the current one it passes", bounded, async () => {
    const key = await generateDPoPKey("ES256", false);
    const signer = await createProofSigner("ES256", key.keyPair);
    const nonces = createDpopNonces();
    const verifier = createDpopVerifier({ nonces });
    const url = "http://127.0.0.1:1/a/B";
    const without = await verifier.verify({
      proof: await signer.sign({ method: "POST", url, accessToken: TOKEN }, Date.now() / 1000),
      accessToken: TOKEN,
      boundJkt: signer.thumbprint,
      method: "POST",
      url,
    });
    assert.equal(without.ok ? "ok" : without.error, "use_dpop_nonce");
    const cache = createNonceCache();
    cache.set(url, nonces.current());
    const withNonce = await verifier.verify({
      proof: await signer.sign({ method: "POST", url, accessToken: TOKEN, nonce: cache.get(url) }, Date.now() / 1000),
      accessToken: TOKEN,
      boundJkt: signer.thumbprint,
      method: "POST",
      url,
    });
    assert.equal(withNonce.ok, true);
  });

  it("htu is the URL without query and fragment", bounded, () => {
    assert.equal(htuOf("http://127.0.0.1:8080/s.v1.S/M?connect=v1&message=e30#x"), "http://127.0.0.1:8080/s.v1.S/M");
    assert.equal(htuOf("https://API.example.com:443/p"), "https://api.example.com/p");
  });

  it("the thumbprint is jose's (RFC 7638) for every algorithm", bounded, async () => {
    for (const algorithm of DPOP_ALGORITHMS) {
      const { keyPair } = await generateDPoPKey(algorithm, false);
      const jwk = await publicJwkOf(algorithm, keyPair.publicKey);
      assert.equal(await jwkThumbprint(algorithm, jwk), await calculateJwkThumbprint(jwk as never), algorithm);
    }
  });

  it("base64url has no padding and the URL-safe alphabet", bounded, () => {
    assert.equal(base64url(new Uint8Array([0xfb, 0xff])), "-_8");
    assert.equal(base64url(new Uint8Array(0)), "");
  });
});

describe("DPoP nonce cache", () => {
  it("keeps the latest nonce per origin and ignores what is not a nonce", bounded, () => {
    const cache = createNonceCache();
    cache.set("http://127.0.0.1:1/a", "one");
    cache.set("http://127.0.0.1:2/a", "two");
    cache.set("http://127.0.0.1:1/b?x", "three");
    assert.equal(cache.get("http://127.0.0.1:1/zzz"), "three");
    assert.equal(cache.get("http://127.0.0.1:2/"), "two");
    assert.equal(cache.get("http://127.0.0.1:3/"), undefined);
    cache.set("http://127.0.0.1:2/", 'with "quote"');
    cache.set("http://127.0.0.1:2/", "x".repeat(2000));
    cache.set("http://127.0.0.1:2/", "");
    cache.set("not a url", "n");
    assert.equal(cache.get("http://127.0.0.1:2/"), "two");
    assert.equal(cache.get("not a url"), undefined);
  });

  it("forgets the least recently set origin beyond 100", bounded, () => {
    const cache = createNonceCache();
    for (let port = 1; port <= 101; port += 1) cache.set(`http://127.0.0.1:${port}/`, `n${port}`);
    assert.equal(cache.get("http://127.0.0.1:1/"), undefined);
    assert.equal(cache.get("http://127.0.0.1:2/"), "n2");
    assert.equal(cache.get("http://127.0.0.1:101/"), "n101");
  });
});

describe("DPoP keys as stores keep them", () => {
  it("dpop option: true is ES256, an algorithm is taken, anything else is a ConfigurationError", bounded, () => {
    assert.equal(dpopAlgorithm("x", undefined), undefined);
    assert.equal(dpopAlgorithm("x", true), "ES256");
    assert.equal(dpopAlgorithm("x", {}), "ES256");
    assert.equal(dpopAlgorithm("x", { algorithm: "Ed25519" }), "Ed25519");
    for (const bad of ["ES256", { algorithm: "HS256" }, { algorithm: "none" }, 1, []]) {
      assert.throws(() => dpopAlgorithm("x", bad), ConfigurationError);
    }
  });

  it("a store that serializes gets JWKs (public without d); reading them back signs with a non-extractable key", bounded, async () => {
    const login = await generateDPoPKey("ES256", true);
    const stored = await storedForm(login, false);
    assert.ok("privateJwk" in stored);
    assert.deepEqual(Object.keys(stored.publicJwk).sort(), ["crv", "kty", "x", "y"]);
    assert.deepEqual(Object.keys(stored.privateJwk).sort(), ["crv", "d", "kty", "x", "y"]);
    const pair = await keyPairOf(stored);
    assert.equal(pair.privateKey.extractable, false);
    assert.equal(pair.publicKey.extractable, true);
    const signer = await createProofSigner("ES256", pair);
    const original = await createProofSigner("ES256", login.keyPair);
    assert.equal(signer.thumbprint, original.thumbprint, "the same key");
  });

  it("a store that keeps objects gets a CryptoKeyPair whose private key cannot be exported", bounded, async () => {
    for (const extractable of [true, false]) {
      const stored = await storedForm(await generateDPoPKey("ES256", extractable), true);
      assert.ok("keyPair" in stored);
      assert.equal(stored.keyPair.privateKey.extractable, false);
      await assert.rejects(crypto.subtle.exportKey("jwk", stored.keyPair.privateKey));
      assert.equal(await keyPairOf(stored), stored.keyPair);
    }
  });

  it("the stored login round-trips with its key and binding; a key held as CryptoKeys is never written", bounded, async () => {
    const dpopKey = await storedForm(await generateDPoPKey("ES256", true), false);
    const login = {
      version: 1 as const,
      issuer: "https://id.example.com",
      clientId: "cli",
      accessToken: TOKEN,
      refreshToken: "r".repeat(43),
      tokenType: "DPoP" as const,
      dpopKey,
    };
    const back = parseStoredTokens(serializeStoredTokens(login), "The test file");
    assert.deepEqual(back, login);
    const inMemory = await storedForm(await generateDPoPKey("ES256", false), true);
    assert.throws(() => serializeStoredTokens({ ...login, dpopKey: inMemory }), ConfigurationError);
  });

  it("a corrupt key or binding is TokenStoreError corrupt, never quoting the key", bounded, async () => {
    const dpopKey = await storedForm(await generateDPoPKey("ES256", true), false);
    assert.ok("privateJwk" in dpopKey);
    const secret = String(dpopKey.privateJwk.d);
    const base = { version: 1, issuer: "https://id.example.com", clientId: "cli", refreshToken: "r".repeat(43), tokenType: "DPoP" };
    const corrupt = [
      { ...base, dpopKey: { ...dpopKey, algorithm: "HS256" } },
      { ...base, dpopKey: { ...dpopKey, privateJwk: { ...dpopKey.privateJwk, d: undefined } } },
      { ...base, dpopKey: { ...dpopKey, privateJwk: { ...dpopKey.privateJwk, d: `${secret}!` } } },
      { ...base, dpopKey: { ...dpopKey, privateJwk: { ...dpopKey.privateJwk, crv: "P-384" } } },
      { ...base, dpopKey: { ...dpopKey, publicJwk: { ...dpopKey.publicJwk, x: dpopKey.publicJwk.y } } },
      { ...base, dpopKey: "key" },
      { ...base, tokenType: "Bearer" },
    ];
    for (const value of corrupt) {
      const error = (() => {
        try {
          parseStoredTokens(JSON.stringify(value), "The test file");
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      assert.ok(error instanceof TokenStoreError, inspect("dpopKey" in value ? "key" : value.tokenType));
      assert.equal(error.reason, "corrupt");
      assert.doesNotMatch(`${error.message} ${inspect(error)}`, new RegExp(secret.slice(0, 16).replace(/[-]/g, "\\-")));
    }
    assert.equal(
      storedJwkKey({ ...dpopKey, privateJwk: { ...dpopKey.privateJwk, extra: "x" } }) !== undefined,
      true,
      "extra members are dropped",
    );
  });

  it("a login with an ES256 key fits the Windows keyring limit; an RSA key fits once the access token goes", bounded, async () => {
    const accessToken = "a".repeat(1000);
    const base = {
      version: 1 as const,
      issuer: "https://id.example.com",
      clientId: "cli",
      refreshToken: "r".repeat(43),
      tokenType: "DPoP" as const,
    };
    const es = await storedForm(await generateDPoPKey("ES256", true), false);
    assert.ok(serializeStoredTokens({ ...base, accessToken, dpopKey: es }).length < keyringValueLimit("win32"));
    const rsa = await storedForm(await generateDPoPKey("PS256", true), false);
    assert.ok(serializeStoredTokens({ ...base, accessToken, dpopKey: rsa }).length > keyringValueLimit("win32"));
    assert.ok(serializeStoredTokens({ ...base, dpopKey: rsa }).length < keyringValueLimit("win32"));
  });
});

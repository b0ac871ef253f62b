/**
 * connect-oidc/server's createTokenVerifier on real parts: access tokens from the real IdP
 * (oidc-provider) and from a loopback issuer with a real JWKS endpoint (test/support/jwt-issuer.ts)
 * for what an IdP would not mint (wrong typ, HS256 confusion, alg none, a rotated key). Each
 * refusal names its reason in the challenge and never holds the token.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createHash, generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import * as oidc from "openid-client";
import { ConfigurationError } from "../../src/index.js";
import {
  createDPoPNonces,
  createTokenVerifier,
  memoryReplayCache,
  type TokenRefusal,
  type TokenVerifierOptions,
  type VerifyResult,
} from "../../src/server.js";
import { createProofSigner } from "../support/dpop-proof.js";
import { type Idp, startIdp } from "../support/idp.js";
import { type JwtIssuer, startJwtIssuer } from "../support/jwt-issuer.js";
import { createLeakScanner } from "../support/leaks.js";

const AUDIENCE = "https://api.example.test";
const URL_SAY = "http://127.0.0.1:9/connectoidc.test.v1.EchoService/Say";
const leaks = createLeakScanner();

function refused(result: VerifyResult): TokenRefusal {
  assert.equal(result.ok, false, "refused");
  leaks.assertClean(result, "refusal");
  return result as TokenRefusal;
}

describe("createTokenVerifier with the real IdP", () => {
  let idp: Idp;
  before(async () => {
    idp = await startIdp({ accessTokenTtl: 600 });
  });
  after(() => idp?.close());

  it("accepts the IdP's JWT access token (keys found through discovery): subject, client, scopes", async () => {
    const login = await idp.login();
    leaks.remember(login.access_token);
    const verifier = createTokenVerifier({ issuer: idp.issuer, audience: idp.audience, allowInsecureRequests: true });
    const result = await verifier.verify({ authorization: `Bearer ${login.access_token}`, method: "POST", url: URL_SAY });
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.scheme, "Bearer");
    assert.equal(result.format, "jwt");
    assert.equal(result.subject, idp.accountId);
    assert.equal(result.clientId, idp.clientId);
    assert.ok(result.scopes.has("api"), `scopes: ${[...result.scopes].join(" ")}`);
    assert.equal(result.jkt, undefined);
  });

  it("refuses it for another audience, and as a DPoP-bound token's bearer use", async () => {
    const login = await idp.login();
    leaks.remember(login.access_token);
    const other = createTokenVerifier({ issuer: idp.issuer, audience: AUDIENCE, allowInsecureRequests: true });
    const wrong = refused(await other.verify({ authorization: `Bearer ${login.access_token}`, method: "POST", url: URL_SAY }));
    assert.equal(wrong.reason, "wrong-audience");
    assert.equal(wrong.headers["www-authenticate"], 'Bearer error="invalid_token", error_description="wrong-audience"');
  });

  it("a DPoP-bound token: accepted with its proof, refused as a bearer token and with another key's proof", async () => {
    const dpopIdp = await startIdp({ accessTokenTtl: 600, dpop: {} });
    try {
      const keys = await generateKeyPair("ES256");
      const handle = oidc.getDPoPHandle(await dpopIdp.cliConfig(), keys);
      const login = await dpopIdp.login({ dpop: handle });
      leaks.remember(login.access_token);
      const owner = await createProofSigner(keys);
      const thief = await createProofSigner((await generateKeyPair("ES256")) as CryptoKeyPair);
      const verifier = createTokenVerifier({ issuer: dpopIdp.issuer, audience: dpopIdp.audience, allowInsecureRequests: true, dpop: {} });
      const request = { authorization: `DPoP ${login.access_token}`, method: "POST", url: URL_SAY };
      const proof = await owner.sign({ htm: "POST", htu: URL_SAY, accessToken: login.access_token });
      const ok = await verifier.verify({ ...request, dpop: proof });
      assert.ok(ok.ok, JSON.stringify(ok));
      assert.equal(ok.scheme, "DPoP");
      assert.equal(ok.jkt, await handle.calculateThumbprint());

      const bearer = refused(await verifier.verify({ ...request, authorization: `Bearer ${login.access_token}` }));
      assert.equal(bearer.reason, "bound-token-as-bearer");
      assert.equal(bearer.headers["www-authenticate"], 'Bearer error="invalid_token", error_description="bound-token-as-bearer"');
      const stolen = refused(
        await verifier.verify({ ...request, dpop: await thief.sign({ htm: "POST", htu: URL_SAY, accessToken: login.access_token }) }),
      );
      assert.equal(stolen.reason, "jkt-mismatch");
      assert.equal(stolen.headers["www-authenticate"], 'DPoP error="invalid_dpop_proof", error_description="jkt-mismatch"');
      // A bearer-only verifier does not take the DPoP scheme at all.
      const bearerOnly = createTokenVerifier({ issuer: dpopIdp.issuer, audience: dpopIdp.audience, allowInsecureRequests: true });
      assert.equal(refused(await bearerOnly.verify({ ...request, dpop: proof })).reason, "malformed");
    } finally {
      await dpopIdp.close();
    }
  });
});

describe("createTokenVerifier: what a real IdP would not mint", () => {
  let issuer: JwtIssuer;
  const options = (more: Partial<TokenVerifierOptions> = {}): TokenVerifierOptions => ({
    issuer: issuer.issuer,
    audience: AUDIENCE,
    allowInsecureRequests: true,
    jwks: { cooldownSeconds: 0 },
    ...more,
  });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}`, method: "POST", url: URL_SAY });
  const claims = () => ({ sub: "user-1", aud: AUDIENCE, client_id: "cli", scope: "events:read events:write" });
  const sign: JwtIssuer["sign"] = async (payload, signOptions) => {
    const token = await issuer.sign(payload, signOptions);
    leaks.remember(token);
    return token;
  };

  before(async () => {
    issuer = await startJwtIssuer();
  });
  after(() => issuer?.close());

  it("missing and malformed authorization: a bare challenge (RFC 6750 §3.1), then invalid_token", async () => {
    const verifier = createTokenVerifier(options({ realm: "agents" }));
    const missing = refused(await verifier.verify({ authorization: null, method: "POST", url: URL_SAY }));
    assert.deepEqual([missing.reason, missing.error, missing.headers["www-authenticate"]], ["missing", undefined, 'Bearer realm="agents"']);
    for (const authorization of ["Basic dXNlcjpwdw==", "Bearer", "Bearer a b", "bearer\tx"]) {
      const malformed = refused(await verifier.verify({ authorization, method: "POST", url: URL_SAY }));
      assert.equal(malformed.headers["www-authenticate"], 'Bearer realm="agents", error="invalid_token", error_description="malformed"');
    }
  });

  it("expiry with a small leeway: 3 s past exp passes (default 5 s), 10 s past is expired; nbf in the future is refused", async () => {
    const verifier = createTokenVerifier(options());
    assert.ok((await verifier.verify(bearer(await sign(claims(), { expiresIn: -3 })))).ok);
    const expired = refused(await verifier.verify(bearer(await sign(claims(), { expiresIn: -10 }))));
    assert.equal(expired.headers["www-authenticate"], 'Bearer error="invalid_token", error_description="expired"');
    const strict = createTokenVerifier(options({ clockToleranceSeconds: 0 }));
    assert.equal(refused(await strict.verify(bearer(await sign(claims(), { expiresIn: -1 })))).reason, "expired");
    const early = await sign({ ...claims(), nbf: Math.floor(Date.now() / 1000) + 60 });
    assert.equal(refused(await verifier.verify(bearer(early))).reason, "not-yet-valid");
    const noExp = await sign({ ...claims(), exp: undefined });
    assert.equal(refused(await verifier.verify(bearer(noExp))).reason, "invalid");
  });

  it("wrong issuer, wrong audience", async () => {
    const verifier = createTokenVerifier(options());
    assert.equal(refused(await verifier.verify(bearer(await sign({ ...claims(), iss: "https://evil.example" })))).reason, "wrong-issuer");
    assert.equal(
      refused(await verifier.verify(bearer(await sign({ ...claims(), aud: "https://other.example" })))).reason,
      "wrong-audience",
    );
    const two = createTokenVerifier(options({ audience: ["https://other.example", AUDIENCE] }));
    assert.ok((await two.verify(bearer(await sign(claims())))).ok, "any audience of a list");
  });

  it("alg none and HS256 keyed with the public key are refused; a key the JWKS does not hold is a bad signature", async () => {
    const verifier = createTokenVerifier(options());
    assert.equal(refused(await verifier.verify(bearer(await sign(claims(), { alg: "none" })))).reason, "bad-alg");
    assert.equal(refused(await verifier.verify(bearer(await sign(claims(), { alg: "HS256-with-public-key" })))).reason, "bad-alg");
    assert.equal(refused(await verifier.verify(bearer(await sign(claims(), { foreignKey: true })))).reason, "bad-signature");
    assert.throws(() => createTokenVerifier(options({ algorithms: ["HS256"] })), ConfigurationError);
    assert.throws(() => createTokenVerifier(options({ dpop: { algorithms: ["none"] } })), ConfigurationError);
  });

  it("typ at+jwt when required (default): a token without it, or an ID token's JWT typ, is refused; requireTyp: false takes them", async () => {
    const verifier = createTokenVerifier(options());
    assert.equal(refused(await verifier.verify(bearer(await sign(claims(), { typ: null })))).reason, "wrong-typ");
    assert.equal(refused(await verifier.verify(bearer(await sign(claims(), { typ: "JWT" })))).reason, "wrong-typ");
    assert.ok((await verifier.verify(bearer(await sign(claims(), { typ: "application/at+jwt" })))).ok);
    const lax = createTokenVerifier(options({ requireTyp: false }));
    assert.ok((await lax.verify(bearer(await sign(claims(), { typ: null })))).ok);
  });

  it("key rotation at the issuer: a token with the new kid is accepted (the key set is fetched again)", async () => {
    const verifier = createTokenVerifier(options());
    assert.ok((await verifier.verify(bearer(await sign(claims())))).ok);
    const fetches = issuer.jwksFetches;
    assert.ok((await verifier.verify(bearer(await sign(claims())))).ok);
    assert.equal(issuer.jwksFetches, fetches, "the key set is cached");
    await issuer.rotate();
    const rotated = await verifier.verify(bearer(await sign(claims())));
    assert.ok(rotated.ok, JSON.stringify(rotated));
    assert.equal(issuer.jwksFetches, fetches + 1, "fetched once more for the new kid");
  });

  it("an issuer that cannot be reached: unavailable, with no challenge (not the token's fault)", async () => {
    const gone = await startJwtIssuer();
    const token = await gone.sign(claims());
    leaks.remember(token);
    await gone.close();
    const verifier = createTokenVerifier({
      issuer: gone.issuer,
      audience: AUDIENCE,
      allowInsecureRequests: true,
      jwks: { timeoutMs: 1000 },
    });
    const result = refused(await verifier.verify(bearer(token)));
    assert.equal(result.reason, "unavailable");
    assert.equal(result.headers["www-authenticate"], undefined);
  });

  it("an opaque token without introspection is refused as opaque", async () => {
    const verifier = createTokenVerifier(options());
    assert.equal(refused(await verifier.verify(bearer("2YotnFZFEjr1zCsicMWpAA"))).reason, "opaque");
  });

  it("configuration mistakes are ConfigurationErrors that name the fix", () => {
    assert.throws(() => createTokenVerifier({ issuer: "http://127.0.0.1:1", audience: AUDIENCE }), /allowInsecureRequests/);
    assert.throws(() => createTokenVerifier({ issuer: "https://login.example.com", audience: "" }), /audience/);
    assert.throws(() => createDPoPNonces({ secret: "short" }), /at least 32 bytes/);
    assert.throws(
      () => createTokenVerifier({ issuer: "https://login.example.com", audience: AUDIENCE, jwksUri: "http://login.example.com/jwks" }),
      /jwksUri` must be https/,
    );
  });
});

describe("DPoP nonces and the replay cache", () => {
  const SECRET = "0123456789abcdef0123456789abcdef";

  it("servers with the same secret agree on the nonce; the previous step's passes, older ones and another secret's do not", () => {
    let now = 1_800_000_000_000;
    const clock = () => now;
    const a = createDPoPNonces({ secret: SECRET, stepSeconds: 60, now: clock });
    const b = createDPoPNonces({ secret: SECRET, stepSeconds: 60, now: clock });
    const other = createDPoPNonces({ secret: `${SECRET}!`, stepSeconds: 60, now: clock });
    const first = a.current();
    assert.equal(b.current(), first, "a fleet agrees without shared storage");
    assert.ok(b.accepts(first));
    assert.equal(other.accepts(first), false, "another secret's nonce is refused");
    now += 60_000;
    assert.notEqual(a.current(), first, "a new step, a new nonce");
    assert.ok(b.accepts(first), "the previous step's nonce still passes");
    now += 60_000;
    assert.equal(b.accepts(first), false, "two steps old: stale");
    assert.equal(a.accepts("not-a-nonce"), false);
  });

  it("memoryReplayCache: a key is accepted once within its time, again after; bounded", () => {
    let now = 0;
    const cache = memoryReplayCache({ maxEntries: 3, now: () => now });
    assert.equal(cache.use("a", 10), true);
    assert.equal(cache.use("a", 10), false);
    now = 11_000;
    assert.equal(cache.use("a", 10), true, "forgotten after its time");
    for (const key of ["b", "c", "d", "e"]) assert.equal(cache.use(key, 10), true);
    assert.equal(cache.use("e", 10), false);
  });
});

describe("DPoP proofs of a Connect GET request", () => {
  it("the request URL carries the message in its query; the proof's htu (without it) passes", async () => {
    const issuer = await startJwtIssuer();
    try {
      const keys = await generateKeyPair("ES256");
      const signer = await createProofSigner(keys as CryptoKeyPair);
      const jkt = await calculateJwkThumbprint(signer.jwk);
      const token = await issuer.sign({ sub: "user-1", aud: AUDIENCE, cnf: { jkt } });
      leaks.remember(token);
      const verifier = createTokenVerifier({
        issuer: issuer.issuer,
        audience: AUDIENCE,
        allowInsecureRequests: true,
        dpop: { required: true },
      });
      const url = `${URL_SAY}?connect=v1&encoding=json&message=%7B%22text%22%3A%22hi%22%7D`;
      const proof = await signer.sign({ htm: "GET", htu: URL_SAY, accessToken: token });
      const ok = await verifier.verify({ authorization: `DPoP ${token}`, dpop: proof, method: "GET", url });
      assert.ok(ok.ok, JSON.stringify(ok));
      const post = await signer.sign({ htm: "POST", htu: URL_SAY, accessToken: token });
      assert.equal(
        refused(await verifier.verify({ authorization: `DPoP ${token}`, dpop: post, method: "GET", url })).reason,
        "htm-mismatch",
      );
    } finally {
      await issuer.close();
    }
  });
});

describe("DPoP proof signatures (node:crypto, keys cached by thumbprint)", () => {
  let issuer: JwtIssuer;
  before(async () => {
    issuer = await startJwtIssuer();
  });
  after(() => issuer?.close());

  const verifier = () =>
    createTokenVerifier({ issuer: issuer.issuer, audience: AUDIENCE, allowInsecureRequests: true, dpop: { required: true } });
  const bound = async (jwk: JWK) => {
    const token = await issuer.sign({ sub: "user-1", aud: AUDIENCE, cnf: { jkt: await calculateJwkThumbprint(jwk) } });
    leaks.remember(token);
    return token;
  };
  const proofWith = async (keyPair: CryptoKeyPair, alg: string, header: Record<string, unknown>, token: string) =>
    new SignJWT({ htm: "POST", htu: URL_SAY, jti: randomUUID(), ath: createHash("sha256").update(token).digest("base64url") })
      .setProtectedHeader({ alg, typ: "dpop+jwt", ...header })
      .setIssuedAt()
      .sign(keyPair.privateKey, { crit: { "x-test": true } });

  for (const alg of ["ES256", "ES384", "ES512", "RS256", "PS256", "PS384", "EdDSA"] as const) {
    it(`${alg}: a proof passes, twice with the same key (cached), and a tampered one is a bad signature`, async () => {
      const keys = (await generateKeyPair(alg, { extractable: true })) as CryptoKeyPair;
      const signer = await createProofSigner(keys, alg);
      const token = await bound(signer.jwk);
      const v = verifier();
      for (let i = 0; i < 2; i++) {
        const proof = await signer.sign({ htm: "POST", htu: URL_SAY, accessToken: token });
        const result = await v.verify({ authorization: `DPoP ${token}`, dpop: proof, method: "POST", url: URL_SAY });
        assert.ok(result.ok, `${alg}: ${JSON.stringify(result)}`);
      }
      const proof = await signer.sign({ htm: "POST", htu: URL_SAY, accessToken: token });
      const [h, p, s] = proof.split(".") as [string, string, string];
      const tampered = `${h}.${p}.${s.slice(0, -4)}${s.slice(-4) === "AAAA" ? "BBBB" : "AAAA"}`;
      const result = await v.verify({ authorization: `DPoP ${token}`, dpop: tampered, method: "POST", url: URL_SAY });
      assert.equal(result.ok ? "ok" : result.reason, "bad-signature");
    });
  }

  it("a header alg that does not fit the key, an RSA key under 2048 bits, a private jwk, a crit header: refused", async () => {
    const v = verifier();
    const ec = (await generateKeyPair("ES256", { extractable: true })) as CryptoKeyPair;
    const ecJwk = await exportJWK(ec.publicKey);
    const token = await bound(ecJwk);
    const send = async (proof: string) => {
      const result = await v.verify({ authorization: `DPoP ${token}`, dpop: proof, method: "POST", url: URL_SAY });
      return result.ok ? "ok" : result.reason;
    };
    assert.equal(await send(await proofWith(ec, "ES256", { jwk: { ...ecJwk, crv: "P-384" } }, token)), "bad-signature", "another curve");
    const privateJwk = await exportJWK(ec.privateKey);
    assert.equal(await send(await proofWith(ec, "ES256", { jwk: privateJwk }, token)), "malformed-proof", "a private key in the proof");
    assert.equal(await send(await proofWith(ec, "ES256", { jwk: ecJwk, crit: ["x-test"], "x-test": 1 }, token)), "malformed-proof");
    assert.equal(await send(await proofWith(ec, "ES256", { jwk: ecJwk }, token)), "ok");

    // jose will not sign with a small RSA key: made by hand with node:crypto (2048 bits: the same proof passes).
    const outcomes: string[] = [];
    for (const modulusLength of [1024, 2048]) {
      const rsa = generateKeyPairSync("rsa", { modulusLength });
      const { kty, n, e } = rsa.publicKey.export({ format: "jwk" });
      const rsaToken = await bound({ kty, n, e } as JWK);
      const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const ath = createHash("sha256").update(rsaToken).digest("base64url");
      const claims = { htm: "POST", htu: URL_SAY, jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ath };
      const input = `${b64({ alg: "RS256", typ: "dpop+jwt", jwk: { kty, n, e } })}.${b64(claims)}`;
      const proof = `${input}.${sign("sha256", Buffer.from(input), rsa.privateKey).toString("base64url")}`;
      const result = await v.verify({ authorization: `DPoP ${rsaToken}`, dpop: proof, method: "POST", url: URL_SAY });
      outcomes.push(result.ok ? "ok" : result.reason);
    }
    assert.deepEqual(outcomes, ["bad-signature", "ok"], "RSA under 2048 bits is refused");
  });
});

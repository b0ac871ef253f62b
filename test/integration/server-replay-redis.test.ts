/**
 * connect-oidc/server's redisReplayCache on a real redis-server: two servers of a fleet (two
 * verifiers) sharing one Redis accept a DPoP proof once between them — with a memory cache
 * each, the same proof passes once on each; a Redis that is down refuses (fail closed), and
 * the refusal says unavailable, not "your proof is bad".
 * Without redis-server the tests skip, except in CI, where they fail.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { calculateJwkThumbprint, generateKeyPair } from "jose";
import { Redis, type RedisOptions } from "ioredis";
import { createTokenVerifier, memoryReplayCache, redisReplayCache, type ReplayCache, type TokenVerifier } from "../../src/server.js";
import { createProofSigner, type ProofSigner } from "../support/dpop-proof.js";
import { type JwtIssuer, startJwtIssuer } from "../support/jwt-issuer.js";
import { type RedisServer, redisServerMissing, startRedisServer } from "../support/redis-server.js";

const missing = redisServerMissing();
if (missing !== undefined && process.env.CI === "true") {
  test("redis-server is available in CI", () => assert.fail(missing));
}

const AUDIENCE = "https://api.example.test";
const URL_SAY = "http://127.0.0.1:9/connectoidc.test.v1.EchoService/Say";

describe("redisReplayCache (real redis-server)", { skip: missing }, () => {
  let server: RedisServer;
  let issuer: JwtIssuer;
  let signer: ProofSigner;
  let token: string;
  const clients: Redis[] = [];

  before(async () => {
    [server, issuer] = await Promise.all([startRedisServer(), startJwtIssuer()]);
    signer = await createProofSigner((await generateKeyPair("ES256")) as CryptoKeyPair);
    token = await issuer.sign({ sub: "user-1", aud: AUDIENCE, cnf: { jkt: await calculateJwkThumbprint(signer.jwk) } });
  });
  after(async () => {
    for (const client of clients) client.disconnect();
    await Promise.all([server?.close(), issuer?.close()]);
  });

  const verifierWith = (replayCache: ReplayCache): TokenVerifier =>
    createTokenVerifier({ issuer: issuer.issuer, audience: AUDIENCE, allowInsecureRequests: true, dpop: { required: true, replayCache } });
  const client = (options: RedisOptions = {}) => {
    const redis = new Redis(server.url, options);
    redis.on("error", () => {});
    clients.push(redis);
    return redis;
  };
  const send = async (verifier: TokenVerifier, proof: string) => {
    const result = await verifier.verify({ authorization: `DPoP ${token}`, dpop: proof, method: "POST", url: URL_SAY });
    return result.ok ? "ok" : result.reason;
  };

  test("two servers sharing Redis accept a proof once between them; with a memory cache each, once on each", async () => {
    const a = verifierWith(redisReplayCache({ client: client() }));
    const b = verifierWith(redisReplayCache({ client: client() }));
    const proof = await signer.sign({ htm: "POST", htu: URL_SAY, accessToken: token });
    assert.deepEqual([await send(a, proof), await send(b, proof), await send(a, proof)], ["ok", "jti-replayed", "jti-replayed"]);
    // A fresh proof passes; the key expires with the proof's window.
    assert.equal(await send(b, await signer.sign({ htm: "POST", htu: URL_SAY, accessToken: token })), "ok");
    const ttl = await client().eval("local k = redis.call('KEYS', 'connect-oidc:dpop-jti:*') return redis.call('TTL', k[1])", 0);
    assert.ok(typeof ttl === "number" && ttl > 0 && ttl <= 62, `TTL ${String(ttl)}`);

    const alone = [verifierWith(memoryReplayCache()), verifierWith(memoryReplayCache())];
    const other = await signer.sign({ htm: "POST", htu: URL_SAY, accessToken: token });
    assert.deepEqual([await send(alone[0]!, other), await send(alone[1]!, other)], ["ok", "ok"], "what the Redis cache prevents");
  });

  test("Redis down: the proof is refused as unavailable (fail closed), and passes once Redis is back", async () => {
    const verifier = verifierWith(redisReplayCache({ client: client({ maxRetriesPerRequest: 1 }), timeoutMs: 300 }));
    const proof = await signer.sign({ htm: "POST", htu: URL_SAY, accessToken: token });
    await server.stop();
    try {
      const result = await verifier.verify({ authorization: `DPoP ${token}`, dpop: proof, method: "POST", url: URL_SAY });
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.reason, "unavailable");
      assert.equal(!result.ok && result.headers["www-authenticate"], undefined, "no challenge: the proof is not at fault");
    } finally {
      await server.start();
    }
    // A new proof per attempt, as a client sends: an attempt whose answer timed out may still
    // have recorded its jti, and that proof is then (rightly) a replay.
    let outcome = "";
    for (let attempt = 0; attempt < 50 && outcome !== "ok"; attempt++) {
      outcome = await send(verifier, await signer.sign({ htm: "POST", htu: URL_SAY, accessToken: token }));
      if (outcome !== "ok") await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(outcome, "ok", "passes once Redis answers again (within 5 s)");
  });
});

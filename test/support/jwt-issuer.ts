/**
 * A minimal real token issuer on loopback for resource-server tests: a discovery document
 * and a JWKS over HTTP, and access tokens signed with jose with any claims and header a test
 * needs (what a real IdP would never mint: wrong `typ`, HS256 with the public key as secret,
 * `alg: none`, acr values). `rotate()` replaces the signing key (new kid, the old one leaves
 * the JWKS), as an IdP rotating its keys does. Counts JWKS fetches.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";

export interface SignOptions {
  /** Header `typ`; null: none. Default "at+jwt". */
  readonly typ?: string | null;
  /** Default RS256 with the current key. */
  readonly alg?: "RS256" | "HS256-with-public-key" | "none";
  /** Seconds from now. Default 300. */
  readonly expiresIn?: number;
  /** Sign with a key the JWKS does not list (same kid as the current one). */
  readonly foreignKey?: boolean;
}

export interface JwtIssuer {
  readonly issuer: string;
  readonly jwksUri: string;
  /** How many times the JWKS was fetched. */
  readonly jwksFetches: number;
  readonly kid: string;
  sign(claims: JWTPayload, options?: SignOptions): Promise<string>;
  /** A new signing key; the JWKS lists only the new one from now on. */
  rotate(): Promise<void>;
  close(): Promise<void>;
}

interface SigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

async function newKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const kid = randomUUID();
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" } };
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

export async function startJwtIssuer(): Promise<JwtIssuer> {
  let key = await newKey();
  const foreign = await newKey();
  let jwksFetches = 0;
  const server = http.createServer((req, res) => {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url === "/.well-known/openid-configuration") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/jwks` }));
      return;
    }
    if (req.url === "/jwks") {
      jwksFetches++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [key.publicJwk] }));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const sign = async (claims: JWTPayload, options: SignOptions = {}): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    const payload = { iss: issuer, iat: now, exp: now + (options.expiresIn ?? 300), jti: randomUUID(), ...claims };
    const typ = options.typ === undefined ? "at+jwt" : options.typ;
    const alg = options.alg ?? "RS256";
    if (alg === "none") return `${b64({ alg: "none", ...(typ ? { typ } : {}) })}.${b64(payload)}.`;
    if (alg === "HS256-with-public-key") {
      // The classic confusion: HMAC keyed with the issuer's public key, which anyone can fetch.
      const secret = new TextEncoder().encode(JSON.stringify(key.publicJwk));
      return new SignJWT(payload).setProtectedHeader({ alg: "HS256", kid: key.kid, ...(typ ? { typ } : {}) }).sign(secret);
    }
    const signing = options.foreignKey ? foreign.privateKey : key.privateKey;
    return new SignJWT(payload).setProtectedHeader({ alg: "RS256", kid: key.kid, ...(typ ? { typ } : {}) }).sign(signing);
  };

  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    get jwksFetches() {
      return jwksFetches;
    },
    get kid() {
      return key.kid;
    },
    sign,
    async rotate() {
      key = await newKey();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

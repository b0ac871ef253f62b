/**
 * The token manager's DPoP part (RFC 9449): which key a login keeps and in what form, the
 * checks that a login fits the manager's `dpop` option (never a fall back to bearer), the
 * key pairs for token requests, and the proofs for resource servers with their nonces.
 * The runner tells it every login it holds (`remember`); it asks nothing back.
 */
import {
  type DPoPAlgorithm,
  generateDPoPKey,
  isDPoPKey,
  isDPoPTokenType,
  keyPairOf,
  type StoredDPoPKey,
  signParams,
  storedForm,
} from "../dpop-key.js";
import { createNonceCache, createProofSigner, type ProofSigner } from "../dpop-proof.js";
import { type BearerAnswer, createBearerAnswers } from "../dpop-bearer-answers.js";
import { ConfigurationError, DPoPKeyError } from "../errors.js";
import type { Clock, DPoPProver, StoredTokens, TokenEndpointResponse } from "../types.js";

export interface TokenDPoPDeps {
  /** The manager's `dpop` option as an algorithm; undefined: DPoP off. */
  readonly algorithm: DPoPAlgorithm | undefined;
  /** The store keeps CryptoKeys as they are (memoryStore). */
  readonly keepsCryptoKeys: boolean;
  readonly clientId: string;
  readonly issuer: string;
  /** The wall clock: a proof's `iat`. */
  readonly clock: Pick<Clock, "now">;
}

export interface TokenDPoP {
  /**
   * The stored form of a login's key (`setTokens`): undefined for a bearer login (DPoP off).
   * A response that does not fit the option throws a ConfigurationError (at once).
   */
  keyOfResponse(response: TokenEndpointResponse): Promise<StoredDPoPKey> | undefined;
  /** A key for a grant without a login (client credentials). */
  newKey(): Promise<StoredDPoPKey>;
  /** The key pair of a stored key, imported once per key; rejects with a `DPoPKeyError` ("unusable"). */
  keyPair(stored: StoredDPoPKey): Promise<CryptoKeyPair>;
  /** Why `login` cannot be used with this manager's option, or undefined. */
  problem(login: StoredTokens): DPoPKeyError | undefined;
  /** The manager holds `login` now (the runner says so at every change): its access token's key is remembered for proofs. */
  remember(login: StoredTokens | undefined): void;
  /**
   * Why the identity provider's answer to a DPoP token request (its `token_type`) cannot be
   * used, or undefined for DPoP-bound tokens. Bearer tokens never are (no silent downgrade).
   * See `createBearerAnswers` for what each refusal means for the login.
   */
  bearerAnswer(tokenType: unknown, grant: "refresh_token" | "client_credentials"): BearerAnswer | undefined;
  /** The interceptor's proofs; only with DPoP on. */
  readonly prover: DPoPProver | undefined;
}

/** Access tokens whose login is remembered: a token handed out just before a refresh still gets its own key. */
const RECENT_LOGINS = 4;

export function createTokenDPoP(deps: TokenDPoPDeps): TokenDPoP {
  const where = `client "${deps.clientId}" at ${deps.issuer}`;
  type Prepared = Promise<{ keyPair: CryptoKeyPair; signer: ProofSigner }>;
  const keys = new WeakMap<StoredDPoPKey, Prepared>();
  // The JWK form by content: a store that parses makes a new object on every read, and one
  // key must stay one CryptoKeyPair (imported and checked once, its IdP nonce kept by oidc.ts).
  const byContent = new Map<string, Prepared>();
  const prepared = (stored: StoredDPoPKey) => {
    const content =
      "keyPair" in stored ? undefined : `${stored.algorithm}\n${JSON.stringify(stored.privateJwk)}\n${JSON.stringify(stored.publicJwk)}`;
    let entry = content === undefined ? keys.get(stored) : byContent.get(content);
    if (entry === undefined) {
      entry = (async () => {
        try {
          const keyPair = await keyPairOf(stored);
          await assertPair(stored, keyPair);
          return { keyPair, signer: await createProofSigner(stored.algorithm, keyPair) };
        } catch {
          // No cause: the platform's message is harmless, but nothing of the key may travel.
          throw new DPoPKeyError("unusable", `The DPoP key stored with the login of ${where} cannot be used: log in again`);
        }
      })();
      if (content === undefined) keys.set(stored, entry);
      else {
        if (byContent.size >= RECENT_LOGINS) byContent.delete(byContent.keys().next().value as string);
        byContent.set(content, entry);
      }
    }
    return entry;
  };

  // The login the manager holds now, and the keys of the access tokens it held last.
  let held: StoredTokens | undefined;
  const recent = new Map<string, StoredDPoPKey>();
  const remember = (login: StoredTokens | undefined) => {
    held = login;
    if (login?.accessToken === undefined || login.dpopKey === undefined || recent.get(login.accessToken) === login.dpopKey) return;
    recent.delete(login.accessToken);
    if (recent.size >= RECENT_LOGINS) recent.delete(recent.keys().next().value as string);
    recent.set(login.accessToken, login.dpopKey);
  };

  const problem = (login: StoredTokens): DPoPKeyError | undefined => {
    // Only the token type says the tokens are bound: a key stored beside bearer tokens binds nothing.
    const dpopBound = login.tokenType === "DPoP";
    if (deps.algorithm === undefined) {
      return dpopBound || login.dpopKey !== undefined
        ? new DPoPKeyError(
            "unexpected",
            `The login of ${where} is DPoP-bound, but this token manager was created without \`dpop\`: pass \`dpop: true\` (its tokens are never sent as bearer tokens)`,
          )
        : undefined;
    }
    if (dpopBound) {
      return login.dpopKey !== undefined
        ? undefined
        : new DPoPKeyError("missing", `The login of ${where} is DPoP-bound, but its DPoP key is missing from the store: log in again`);
    }
    return new DPoPKeyError(
      "not-bound",
      `This token manager uses DPoP, but the login of ${where} holds bearer tokens${login.dpopKey !== undefined ? " (a DPoP key is stored with them, but they are not bound to it)" : ""}: log in again with the same \`dpop\` option`,
    );
  };

  const bearerAnswers = createBearerAnswers(where);
  const nonces = createNonceCache();
  const prover: DPoPProver = {
    async proof(request) {
      const login = held;
      const stored = recent.get(request.accessToken) ?? login?.dpopKey;
      if (stored === undefined) {
        throw (login !== undefined ? problem(login) : undefined) ?? new DPoPKeyError("missing", `No DPoP key for the login of ${where}`);
      }
      const { signer } = await prepared(stored);
      return signer.sign(
        { method: request.method, url: request.url, accessToken: request.accessToken, nonce: nonces.get(request.url) },
        deps.clock.now() / 1000,
      );
    },
    nonce(url, nonce) {
      nonces.set(url, nonce);
    },
  };

  return {
    keyOfResponse(response) {
      bearerAnswers.newLogin();
      const dpopBound = isDPoPTokenType(response.token_type);
      if (deps.algorithm === undefined) {
        if (dpopBound || response.dpopKey !== undefined) {
          throw new ConfigurationError(
            "setTokens: the login is DPoP-bound (it has a DPoP key or token_type DPoP), but this token manager was created without `dpop`: pass `dpop: true`",
          );
        }
        return undefined;
      }
      if (!isDPoPKey(response.dpopKey)) {
        throw new ConfigurationError(
          "setTokens: this token manager uses DPoP, but the login carries no DPoP key: log in with the same `dpop` option (loginWithBrowser / loginWithDeviceCode)",
        );
      }
      if (!dpopBound) {
        throw new ConfigurationError(
          "setTokens: this token manager uses DPoP, but the identity provider did not bind the login's tokens (token_type is not DPoP): does it support DPoP?",
        );
      }
      return storedForm(response.dpopKey, deps.keepsCryptoKeys).catch(() => {
        throw new ConfigurationError(
          "setTokens: the login's DPoP private key cannot be exported, but this store keeps the login as text (JWKs): create the key extractable, as the logins do",
        );
      });
    },
    async newKey() {
      const algorithm = deps.algorithm ?? "ES256";
      return storedForm(await generateDPoPKey(algorithm, !deps.keepsCryptoKeys), deps.keepsCryptoKeys);
    },
    async keyPair(stored) {
      return (await prepared(stored)).keyPair;
    },
    problem,
    remember,
    bearerAnswer: bearerAnswers.check,
    prover: deps.algorithm === undefined ? undefined : prover,
  };
}

/** JWKs whose private part does not belong to the public one import fine: sign and verify once to know. */
async function assertPair(stored: StoredDPoPKey, keyPair: CryptoKeyPair): Promise<void> {
  const params = signParams(stored.algorithm);
  const data = new TextEncoder().encode("connect-oidc DPoP key check");
  const signature = await crypto.subtle.sign(params, keyPair.privateKey, data);
  if (!(await crypto.subtle.verify(params, keyPair.publicKey, signature, data))) throw new Error("the key pair does not match");
}

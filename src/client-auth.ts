/**
 * How a client proves itself at the token endpoint: the method, chosen by the user or
 * from what the provider lists (`token_endpoint_auth_methods_supported`), and the checks
 * of what each method needs. No I/O.
 */
import { ConfigurationError } from "./errors.js";

/**
 * How a confidential client authenticates at the token endpoint (`clientAuthentication`
 * in {@link TokenManagerOptions}); `"none"` for public clients.
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 *
 * // A provider that does not form-decode Basic credentials: send the secret in the body.
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "my-service",
 *   clientSecret: process.env.CLIENT_SECRET,
 *   clientAuthentication: "client_secret_post",
 *   grant: "client_credentials",
 * });
 * ```
 */
export type ClientAuthentication = "client_secret_basic" | "client_secret_post" | "private_key_jwt" | "none";

/**
 * A private key for private_key_jwt: a WebCrypto key, with its key id when the provider needs one.
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 *
 * const key = await crypto.subtle.importKey("pkcs8", pkcs8Bytes, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "my-service",
 *   clientPrivateKey: { key, kid: "2026-11" },
 *   grant: "client_credentials",
 * });
 * ```
 */
export type ClientPrivateKey = CryptoKey | { readonly key: CryptoKey; readonly kid?: string };

/**
 * Where a client assertion comes from (RFC 7523 client authentication): a function that
 * returns a JWT the identity provider trusts for this client, e.g. one the platform issues
 * (a Kubernetes projected service-account token, a CI job's OIDC token). Called before every
 * token request; the JWT goes out as `client_assertion` with `client_assertion_type`
 * `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, and is never kept, logged or
 * put in an error. `clientAssertionFromFile` (connect-oidc/node) reads a token file anew
 * on every use.
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 *
 * // A CI job's identity token, asked for each time the service needs a new access token.
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "ci-deployer",
 *   clientAssertion: () => fetchJobIdentityToken({ audience: "https://login.example.com" }),
 *   grant: "client_credentials",
 * });
 * ```
 */
export type ClientAssertion = () => string | Promise<string>;

export interface ClientCredentialsOptions {
  readonly clientSecret?: string;
  readonly clientAuthentication?: ClientAuthentication;
  readonly clientPrivateKey?: ClientPrivateKey;
  readonly clientAssertion?: ClientAssertion;
}

/** How the client proves itself, as a refusal of its credentials names it. */
export type ClientCredentialsKind = "secret" | "private-key" | "assertion" | "none";

/** Which credentials `options` give, for messages. */
export function credentialsKind(options: ClientCredentialsOptions): ClientCredentialsKind {
  if (options.clientAuthentication === "none") return "none";
  if (options.clientAssertion !== undefined) return "assertion";
  if (options.clientAuthentication === "private_key_jwt" || options.clientPrivateKey !== undefined) return "private-key";
  return options.clientSecret !== undefined ? "secret" : "none";
}

const METHODS: readonly ClientAuthentication[] = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];

/**
 * The method to use. Explicit wins; a private key or a client assertion means private_key_jwt
 * (an RFC 7523 assertion, signed here or by the platform); no secret means
 * none; with a secret, client_secret_basic when the provider lists it or lists nothing
 * (RFC 8414's default), else client_secret_post when it lists that.
 */
export function chooseClientAuthentication(
  options: ClientCredentialsOptions,
  supported: readonly string[] | undefined,
): ClientAuthentication {
  if (options.clientAuthentication !== undefined) return options.clientAuthentication;
  if (options.clientPrivateKey !== undefined || options.clientAssertion !== undefined) return "private_key_jwt";
  if (options.clientSecret === undefined) return "none";
  if (supported === undefined || supported.includes("client_secret_basic") || !supported.includes("client_secret_post")) {
    return "client_secret_basic";
  }
  return "client_secret_post";
}

/** Throws a `ConfigurationError` for a method without what it needs. */
export function checkClientAuthentication(name: string, options: ClientCredentialsOptions): void {
  const method = options.clientAuthentication;
  if (method !== undefined && !METHODS.includes(method)) {
    throw new ConfigurationError(`${name}: \`clientAuthentication\` must be one of ${METHODS.join(", ")}`);
  }
  if ((method === "client_secret_basic" || method === "client_secret_post") && options.clientSecret === undefined) {
    throw new ConfigurationError(`${name}: \`clientAuthentication: "${method}"\` needs \`clientSecret\``);
  }
  const key = options.clientPrivateKey;
  const assertion = options.clientAssertion;
  if (method === "private_key_jwt" && key === undefined && assertion === undefined) {
    throw new ConfigurationError(`${name}: \`clientAuthentication: "private_key_jwt"\` needs \`clientPrivateKey\` or \`clientAssertion\``);
  }
  if (assertion !== undefined) checkClientAssertion(name, options);
  if (key !== undefined) {
    const cryptoKey = isCryptoKey(key) ? key : (key as { key?: unknown }).key;
    if (!isCryptoKey(cryptoKey) || cryptoKey.type !== "private") {
      throw new ConfigurationError(`${name}: \`clientPrivateKey\` must be a private CryptoKey, or { key: CryptoKey, kid? }`);
    }
  }
}

/** Whether `value` has a JWS's shape (three base64url parts, the first two non-empty); says nothing of its validity. */
export function isJwtShaped(value: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value) && value.length <= 65_536;
}

function checkClientAssertion(name: string, options: ClientCredentialsOptions): void {
  if (typeof options.clientAssertion !== "function") {
    throw new ConfigurationError(`${name}: \`clientAssertion\` must be a function returning the JWT (or a promise of it)`);
  }
  if (options.clientPrivateKey !== undefined) {
    throw new ConfigurationError(`${name}: give \`clientAssertion\` or \`clientPrivateKey\`, not both`);
  }
  const method = options.clientAuthentication;
  if (method !== undefined && method !== "private_key_jwt") {
    throw new ConfigurationError(
      `${name}: \`clientAssertion\` is sent as a private_key_jwt client assertion: leave \`clientAuthentication\` out or set it to "private_key_jwt"`,
    );
  }
}

function isCryptoKey(value: unknown): value is CryptoKey {
  return typeof CryptoKey !== "undefined" && value instanceof CryptoKey;
}

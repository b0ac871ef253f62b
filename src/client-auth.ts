/**
 * How a client proves itself at the token endpoint: the method, chosen by the user or
 * from what the provider lists (`token_endpoint_auth_methods_supported`). No I/O.
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

export interface ClientCredentialsOptions {
  readonly clientSecret?: string;
  readonly clientAuthentication?: ClientAuthentication;
  readonly clientPrivateKey?: ClientPrivateKey;
}

const METHODS: readonly ClientAuthentication[] = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];

/**
 * The method to use. Explicit wins; a private key means private_key_jwt; no secret means
 * none; with a secret, client_secret_basic when the provider lists it or lists nothing
 * (RFC 8414's default), else client_secret_post when it lists that.
 */
export function chooseClientAuthentication(
  options: ClientCredentialsOptions,
  supported: readonly string[] | undefined,
): ClientAuthentication {
  if (options.clientAuthentication !== undefined) return options.clientAuthentication;
  if (options.clientPrivateKey !== undefined) return "private_key_jwt";
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
  if (method === "private_key_jwt" && key === undefined) {
    throw new ConfigurationError(`${name}: \`clientAuthentication: "private_key_jwt"\` needs \`clientPrivateKey\``);
  }
  if (key !== undefined) {
    const cryptoKey = isCryptoKey(key) ? key : (key as { key?: unknown }).key;
    if (!isCryptoKey(cryptoKey) || cryptoKey.type !== "private") {
      throw new ConfigurationError(`${name}: \`clientPrivateKey\` must be a private CryptoKey, or { key: CryptoKey, kid? }`);
    }
  }
}

function isCryptoKey(value: unknown): value is CryptoKey {
  return typeof CryptoKey !== "undefined" && value instanceof CryptoKey;
}

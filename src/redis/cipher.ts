/**
 * Optional encryption of the login at rest in Redis: AES-GCM (WebCrypto) with a random
 * 96-bit IV per write and the Redis key as additional data, so a value copied to another
 * key does not decrypt there. A Redis reader without the key gets no usable token.
 */
import { ConfigurationError } from "../errors.js";
import { corrupt } from "../stored-tokens.js";

/** What an encrypted value starts with; the rest is base64 of IV ‖ ciphertext ‖ tag. */
const PREFIX = "aes-gcm:";
const IV_BYTES = 12;

export interface Cipher {
  seal(text: string): Promise<string>;
  /** `where` names the key in errors. */
  open(value: string, where: string): Promise<string>;
}

/** The identity when no key is given: values are the serialized login as is. */
export const plainText: Cipher = {
  async seal(text) {
    return text;
  },
  async open(value, where) {
    if (value.startsWith(PREFIX)) {
      throw corrupt(where, "it is encrypted and no encryptionKey was given to redisStore");
    }
    return value;
  },
};

/** AES-GCM with `key`: a WebCrypto AES-GCM CryptoKey, or 16 or 32 raw bytes. */
export function aesGcm(key: CryptoKey | Uint8Array, redisKey: string): Cipher {
  const cryptoKey = importKey(key);
  const additionalData = new TextEncoder().encode(redisKey);
  return {
    async seal(text) {
      const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
      const sealed = new Uint8Array(
        await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData }, await cryptoKey, new TextEncoder().encode(text)),
      );
      const out = new Uint8Array(IV_BYTES + sealed.length);
      out.set(iv);
      out.set(sealed, IV_BYTES);
      return PREFIX + Buffer.from(out).toString("base64");
    },
    async open(value, where) {
      if (!value.startsWith(PREFIX)) throw corrupt(where, "it is not encrypted, but redisStore was given an encryptionKey");
      const bytes = Buffer.from(value.slice(PREFIX.length), "base64");
      if (bytes.length <= IV_BYTES + 16) throw corrupt(where, "its encrypted value is too short");
      try {
        const plain = await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: bytes.subarray(0, IV_BYTES), additionalData },
          await cryptoKey,
          bytes.subarray(IV_BYTES),
        );
        return new TextDecoder().decode(plain);
      } catch {
        throw corrupt(where, "it does not decrypt with the given encryptionKey (another key, or altered)");
      }
    },
  };
}

function importKey(key: CryptoKey | Uint8Array): Promise<CryptoKey> {
  if (key instanceof Uint8Array) {
    if (key.length !== 16 && key.length !== 32) {
      throw new ConfigurationError("redisStore: `encryptionKey` must be 16 or 32 bytes (AES-128 or AES-256 GCM), or a CryptoKey");
    }
    return crypto.subtle.importKey("raw", new Uint8Array(key), "AES-GCM", false, ["encrypt", "decrypt"]);
  }
  const algorithm = (key as Partial<CryptoKey> | null)?.algorithm?.name;
  const usages = (key as Partial<CryptoKey> | null)?.usages ?? [];
  if (algorithm !== "AES-GCM" || !usages.includes("encrypt") || !usages.includes("decrypt")) {
    throw new ConfigurationError(
      "redisStore: `encryptionKey` must be an AES-GCM CryptoKey usable to encrypt and decrypt, or 16 or 32 raw bytes",
    );
  }
  return Promise.resolve(key);
}

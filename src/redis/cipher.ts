/**
 * Optional encryption of the login at rest in Redis: AES-GCM (WebCrypto) with a random
 * 96-bit IV per write and, as additional data, the Redis key and the version the value is
 * written as: a value copied to another key, or an older value written back over a newer
 * one (a replay by someone who can write Redis but holds no key), does not decrypt. A
 * Redis reader without the key gets no usable token.
 */
import { ConfigurationError, corruptLogin } from "../errors.js";

/**
 * What an encrypted value starts with; the rest is base64 of IV ‖ ciphertext ‖ tag.
 * `aes-gcm2:` binds the key and the version; `aes-gcm:` (connect-oidc before it) the key
 * only: still read, and replaced by the next save.
 */
const PREFIX = "aes-gcm2:";
const KEY_ONLY_PREFIX = "aes-gcm:";
const IV_BYTES = 12;

export interface Cipher {
  /** Whether `seal` needs the version the value will be written as (ahead of the write). */
  readonly bindsVersion: boolean;
  /** `version`: the one this value will be written as. */
  seal(text: string, version: number): Promise<string>;
  /** `where` names the key in errors; `version`: the one read with the value. */
  open(value: string, where: string, version: number): Promise<string>;
}

/** The identity when no key is given: values are the serialized login as is. */
export const plainText: Cipher = {
  bindsVersion: false,
  async seal(text) {
    return text;
  },
  async open(value, where) {
    if (value.startsWith(PREFIX) || value.startsWith(KEY_ONLY_PREFIX)) {
      throw corruptLogin(where, "it is encrypted and no encryptionKey was given to redisStore");
    }
    return value;
  },
};

/** AES-GCM with `key`: a WebCrypto AES-GCM CryptoKey, or 16 or 32 raw bytes. */
export function aesGcm(key: CryptoKey | Uint8Array, redisKey: string): Cipher {
  const cryptoKey = importKey(key);
  const encoder = new TextEncoder();
  const keyOnly = encoder.encode(redisKey);
  const boundTo = (version: number) => encoder.encode(`${redisKey}\n${version}`);
  return {
    bindsVersion: true,
    async seal(text, version) {
      const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
      const sealed = new Uint8Array(
        await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: boundTo(version) }, await cryptoKey, encoder.encode(text)),
      );
      const out = new Uint8Array(IV_BYTES + sealed.length);
      out.set(iv);
      out.set(sealed, IV_BYTES);
      return PREFIX + Buffer.from(out).toString("base64");
    },
    async open(value, where, version) {
      const bound = value.startsWith(PREFIX);
      if (!bound && !value.startsWith(KEY_ONLY_PREFIX)) {
        throw corruptLogin(where, "it is not encrypted, but redisStore was given an encryptionKey");
      }
      const bytes = Buffer.from(value.slice(bound ? PREFIX.length : KEY_ONLY_PREFIX.length), "base64");
      if (bytes.length <= IV_BYTES + 16) throw corruptLogin(where, "its encrypted value is too short");
      try {
        const plain = await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: bytes.subarray(0, IV_BYTES), additionalData: bound ? boundTo(version) : keyOnly },
          await cryptoKey,
          bytes.subarray(IV_BYTES),
        );
        return new TextDecoder().decode(plain);
      } catch {
        throw corruptLogin(
          where,
          bound
            ? "it does not decrypt with the given encryptionKey as the version stored beside it (another key, an altered value, or an older value written back)"
            : "it does not decrypt with the given encryptionKey (another key, or altered)",
        );
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

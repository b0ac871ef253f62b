/**
 * DPoP server nonces a fleet agrees on without shared storage (RFC 9449 §8, §9): the nonce
 * of a time step is an HMAC-SHA256 of the step number under a secret every server holds.
 * A nonce of the current or the previous step is accepted, so one handed out just before a
 * step ends still works; an older one is answered with `use_dpop_nonce` and the current one.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { ConfigurationError } from "../errors.js";
import type { DPoPNonces } from "./types.js";

/**
 * Options of {@link createDPoPNonces}.
 *
 * @example
 * ```ts
 * import type { DPoPNoncesOptions } from "connect-oidc/server";
 *
 * const options: DPoPNoncesOptions = { secret: process.env.DPOP_NONCE_SECRET, stepSeconds: 120 };
 * ```
 */
export interface DPoPNoncesOptions {
  /**
   * The secret every server of the fleet shares: at least 32 bytes (a string is taken as
   * UTF-8). Default: 32 random bytes — nonces of this process only.
   */
  readonly secret?: string | Uint8Array;
  /** How long a step lasts, in seconds (a nonce lives one to two steps). Default 60. */
  readonly stepSeconds?: number;
  /** Wall clock, epoch ms (servers of a fleet must agree on the step). Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * Stateless DPoP nonces from a shared secret and a time step.
 *
 * @example
 * ```ts
 * import { createDPoPNonces, createTokenVerifier } from "connect-oidc/server";
 *
 * // Every server of the fleet gets the same secret (e.g. from the secret store).
 * const nonces = createDPoPNonces({ secret: process.env.DPOP_NONCE_SECRET ?? "", stepSeconds: 60 });
 * const verifier = createTokenVerifier({
 *   issuer: "https://login.example.com",
 *   audience: "https://api.example.com",
 *   dpop: { required: true, nonces },
 * });
 * ```
 */
export function createDPoPNonces(options: DPoPNoncesOptions = {}): DPoPNonces {
  const secret = options.secret === undefined ? randomBytes(32) : Buffer.from(options.secret);
  if (secret.byteLength < 32) {
    throw new ConfigurationError("createDPoPNonces: `secret` must be at least 32 bytes (e.g. `openssl rand -base64 32`)");
  }
  const stepSeconds = options.stepSeconds ?? 60;
  if (!(stepSeconds >= 1 && stepSeconds <= 86_400))
    throw new ConfigurationError("createDPoPNonces: `stepSeconds` must be between 1 and 86400");
  const now = options.now ?? Date.now;
  // The last two steps' nonces, computed once per step.
  const known = new Map<number, Buffer>();

  const nonceOf = (step: number): Buffer => {
    let nonce = known.get(step);
    if (nonce === undefined) {
      nonce = Buffer.from(createHmac("sha256", secret).update(`connect-oidc dpop-nonce ${step}`).digest("base64url").slice(0, 32));
      if (known.size >= 4) known.clear();
      known.set(step, nonce);
    }
    return nonce;
  };
  const stepNow = () => Math.floor(now() / 1000 / stepSeconds);
  const same = (a: Buffer, b: Buffer) => a.byteLength === b.byteLength && timingSafeEqual(a, b);

  return {
    current: () => nonceOf(stepNow()).toString(),
    accepts(nonce) {
      if (typeof nonce !== "string" || nonce.length !== 32) return false;
      const given = Buffer.from(nonce);
      const step = stepNow();
      return same(given, nonceOf(step)) || same(given, nonceOf(step - 1));
    },
  };
}

/**
 * The check of one DPoP proof (RFC 9449 §4.3) against the request and the verified access
 * token: a compact JWS of `typ: dpop+jwt` with an allowed asymmetric `alg` that fits the public
 * key it embeds (no private members, no `crit`), signed by that key (proof-keys.ts); `htm`/`htu` name this request (query and fragment ignored, so a Connect GET
 * passes); `iat` within the window; `ath` is the token's hash; the token's `cnf.jkt` is the
 * key's thumbprint; a current server nonce when nonces are on; and the `jti` seen for the
 * first time — checked last, so a refused proof does not use up its `jti`.
 */
import { createHash } from "node:crypto";
import { createProofKeys, publicMembersOf, thumbprintOf } from "./proof-keys.js";
import type { DPoPNonces, DPoPRefusalReason, ReplayCache } from "./types.js";

export interface ProofInput {
  readonly proof: string | null | undefined;
  readonly accessToken: string;
  /** The verified token's `cnf.jkt` (undefined: not bound). */
  readonly boundJkt: string | undefined;
  readonly method: string;
  readonly url: string;
}

export type ProofResult =
  | { readonly ok: true; readonly jkt: string; readonly nonce: string | undefined }
  | { readonly ok: false; readonly reason: DPoPRefusalReason | "unavailable"; readonly jkt?: string; readonly nonce?: string };

export interface ProofChecker {
  check(input: ProofInput): Promise<ProofResult>;
}

export interface ProofCheckerOptions {
  readonly algorithms: readonly string[];
  readonly iatWindowSeconds: number;
  readonly nonces: DPoPNonces | undefined;
  readonly replayCache: ReplayCache;
  readonly keyCacheSize: number;
  /** Wall clock, epoch ms. */
  readonly now: () => number;
}

const MAX_PROOF_LENGTH = 8192;
const decoder = new TextDecoder();

function isDPoPTyp(typ: unknown): boolean {
  return typeof typ === "string" && /^(application\/)?dpop\+jwt$/i.test(typ);
}

/** The proof's protected header, parsed without verification (its key comes from it). */
function headerOf(proof: string): Record<string, unknown> | undefined {
  const dot = proof.indexOf(".");
  if (dot <= 0) return undefined;
  try {
    const header: unknown = JSON.parse(decoder.decode(Buffer.from(proof.slice(0, dot), "base64url")));
    return typeof header === "object" && header !== null && !Array.isArray(header) ? (header as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The URL without query and fragment, normalized; undefined when it is not a URL. */
export function htuOf(url: string): string | undefined {
  if (!URL.canParse(url)) return undefined;
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
}

/** base64url(SHA-256(token)), a proof's `ath`. */
export function accessTokenHash(token: string): string {
  return createHash("sha256").update(token, "ascii").digest("base64url");
}

interface ParsedProof {
  readonly ok: true;
  readonly members: Record<string, string>;
  readonly jkt: string;
  readonly alg: string;
  readonly signingInput: string;
  readonly signature: Buffer;
  readonly encodedPayload: string;
}

/** The proof's parts and its header's checks (typ, alg, a public jwk, no crit), before its signature. */
function parseProof(
  value: string | null | undefined,
  algorithms: readonly string[],
): ParsedProof | { readonly ok: false; readonly reason: DPoPRefusalReason } {
  const proof = value?.trim();
  if (!proof) return { ok: false, reason: "missing-proof" };
  if (proof.includes(",")) return { ok: false, reason: "multiple-proofs" };
  if (proof.length > MAX_PROOF_LENGTH) return { ok: false, reason: "malformed-proof" };
  const parts = proof.split(".");
  const header = parts.length === 3 ? headerOf(proof) : undefined;
  // No `crit` extension is understood here (RFC 7515 §4.1.11), so none is accepted.
  if (!header || header.crit !== undefined) return { ok: false, reason: "malformed-proof" };
  if (!isDPoPTyp(header.typ)) return { ok: false, reason: "wrong-typ" };
  const alg = header.alg;
  if (typeof alg !== "string" || !algorithms.includes(alg)) return { ok: false, reason: "bad-alg" };
  const jwk = header.jwk;
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) return { ok: false, reason: "malformed-proof" };
  const members = publicMembersOf(jwk as Record<string, unknown>);
  if (members === undefined) return { ok: false, reason: "malformed-proof" };
  const [encodedHeader, encodedPayload, encodedSignature] = parts as [string, string, string];
  return {
    ok: true,
    members,
    jkt: thumbprintOf(members),
    alg,
    signingInput: `${encodedHeader}.${encodedPayload}`,
    signature: Buffer.from(encodedSignature, "base64url"),
    encodedPayload,
  };
}

export function createProofChecker(options: ProofCheckerOptions): ProofChecker {
  const keys = createProofKeys(options.keyCacheSize);
  const { algorithms, iatWindowSeconds, nonces, replayCache, now } = options;

  const check = async (input: ProofInput): Promise<ProofResult> => {
    const parsed = parseProof(input.proof, algorithms);
    if (!parsed.ok) return parsed;
    const { members, jkt, alg, signingInput, signature, encodedPayload } = parsed;
    let signed: boolean;
    try {
      signed = keys.verify(members, jkt, alg, signingInput, signature);
    } catch {
      signed = false;
    }
    if (!signed) return { ok: false, reason: "bad-signature" };
    let payload: unknown;
    try {
      payload = JSON.parse(decoder.decode(Buffer.from(encodedPayload, "base64url")));
    } catch {
      return { ok: false, reason: "malformed-proof", jkt };
    }
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return { ok: false, reason: "malformed-proof", jkt };
    return checkClaims(input, payload as Record<string, unknown>, jkt);
  };

  const checkClaims = async (input: ProofInput, payload: Record<string, unknown>, jkt: string): Promise<ProofResult> => {
    const nonce = typeof payload.nonce === "string" ? payload.nonce : undefined;
    const refuse = (reason: DPoPRefusalReason | "unavailable"): ProofResult =>
      nonce === undefined ? { ok: false, reason, jkt } : { ok: false, reason, jkt, nonce };
    const { jti, htm, htu, iat, ath } = payload;
    if (typeof jti !== "string" || jti === "" || jti.length > 256 || typeof iat !== "number") return refuse("malformed-proof");
    if (htm !== input.method) return refuse("htm-mismatch");
    const expectedHtu = htuOf(input.url);
    if (typeof htu !== "string" || expectedHtu === undefined || htuOf(htu) !== expectedHtu) return refuse("htu-mismatch");
    const nowSeconds = now() / 1000;
    if (Math.abs(nowSeconds - iat) > iatWindowSeconds) return refuse("iat-outside-window");
    if (ath !== accessTokenHash(input.accessToken)) return refuse("ath-mismatch");
    if (input.boundJkt === undefined) return refuse("token-not-bound");
    if (input.boundJkt !== jkt) return refuse("jkt-mismatch");
    if (nonces) {
      if (nonce === undefined) return refuse("nonce-missing");
      if (!nonces.accepts(nonce)) return refuse("nonce-stale");
    }
    try {
      // Remembered until its iat leaves the window (then the iat check refuses it anyway).
      const first = await replayCache.use(`${jkt}:${jti}`, Math.max(1, iat + iatWindowSeconds - nowSeconds + 1));
      if (!first) return refuse("jti-replayed");
    } catch {
      return refuse("unavailable");
    }
    return { ok: true, jkt, nonce };
  };

  return { check };
}

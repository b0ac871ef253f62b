/**
 * A resource server's DPoP nonces (RFC 9449 §9): one current nonce, replaced every
 * `rotateMs` (on a monotonic clock, checked when asked — no timer) and on `rotate()`. The
 * nonce it replaced stays accepted until the next rotation, so a client that learned it
 * just before a rotation is not refused.
 */
import { randomBytes } from "node:crypto";

export interface DpopNonces {
  /** The nonce to hand out now (rotating first if its time is up). */
  current(): string;
  /** The current or the previous nonce. */
  accepts(nonce: string): boolean;
  /** Replace the current nonce now. */
  rotate(): void;
}

export interface DpopNoncesOptions {
  /** Rotate after this many ms; undefined or 0: only on `rotate()`. */
  readonly rotateMs?: number;
  /** Monotonic clock in ms. Default `performance.now()`. */
  readonly nowMs?: () => number;
  /** A fresh nonce. Default 16 random bytes, base64url. */
  readonly newNonce?: () => string;
}

export function createDpopNonces(options: DpopNoncesOptions = {}): DpopNonces {
  const nowMs = options.nowMs ?? (() => performance.now());
  const newNonce = options.newNonce ?? (() => randomBytes(16).toString("base64url"));
  const rotateMs = options.rotateMs && options.rotateMs > 0 ? options.rotateMs : undefined;
  let current = newNonce();
  let previous: string | undefined;
  let rotatedAt = nowMs();

  const rotate = () => {
    previous = current;
    current = newNonce();
    rotatedAt = nowMs();
  };
  const rotateIfDue = () => {
    if (rotateMs === undefined) return;
    const elapsed = nowMs() - rotatedAt;
    if (elapsed < rotateMs) return;
    rotate();
    // Two periods or more without a request: the old nonce is past its time too.
    if (elapsed >= 2 * rotateMs) previous = undefined;
  };

  return {
    current() {
      rotateIfDue();
      return current;
    },
    accepts(nonce) {
      rotateIfDue();
      return nonce === current || nonce === previous;
    },
    rotate,
  };
}

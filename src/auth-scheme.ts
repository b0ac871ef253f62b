/**
 * What the auth interceptor asks of an authentication scheme (bearer in auth-scheme-bearer.ts,
 * DPoP in auth-scheme-dpop.ts), chosen once when the interceptor is made: the headers of one
 * attempt, what a server's answers carry for the scheme, and what a refusal asks for. Also
 * the failures both schemes and the interceptor share.
 */
import { Code, ConnectError, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";

/** How an authentication scheme puts a token on a request and answers a server's refusal. */
export interface AuthScheme {
  /**
   * The request for one attempt with `token`: a copy with its own headers (the transport
   * edits them in place). Throws {@link RequestNotSent} when the request cannot be made.
   */
  authorize<R extends UnaryRequest | StreamRequest>(req: R, token: string): R | Promise<R>;
  /**
   * Present only when the scheme's one header, `authorization`, needs no waiting: its value
   * for `token` (the fast path of a call whose token is at hand sets it in place).
   */
  readonly authorizationOf?: (token: string) => string;
  /** The server at `url` sent these headers or trailers (DPoP: they may carry a nonce). */
  note(url: string, headers: Headers | undefined): void;
  /**
   * What the `refusal` of a request sent to `url` asks for (only Unauthenticated is ever
   * retried; a step-up or insufficient-scope challenge of any code is a `fail`).
   */
  answer(url: string, refusal: unknown): RefusalAnswer;
}

/**
 * - `new-token`: the token was refused: tell the provider; re-send with a fresh one.
 * - `same-token`: a DPoP nonce challenge: re-send with the same token (the next proof carries
 *   the new nonce); it says nothing of the token, so the provider is not told.
 * - `fail`: a challenge that cannot be answered (step-up, insufficient scope, an unusable
 *   DPoP nonce): the call fails now with `error`; the token is not reported as refused.
 */
export type RefusalAnswer =
  | { readonly kind: "new-token" }
  | { readonly kind: "same-token" }
  | { readonly kind: "fail"; readonly error: ConnectError };

export const NEW_TOKEN: RefusalAnswer = Object.freeze({ kind: "new-token" });
export const SAME_TOKEN: RefusalAnswer = Object.freeze({ kind: "same-token" });

/**
 * Thrown by {@link AuthScheme.authorize} when the request was never sent (e.g. no DPoP proof
 * could be made): no server refused the token, so nothing is retried or reported. The
 * interceptor throws `failure` to the caller in its place.
 */
export class RequestNotSent {
  constructor(readonly failure: ConnectError) {}
}

/**
 * `Headers.set`, whose refusal (a value with CR, LF, NUL or beyond Latin-1) quotes the value:
 * replaced by a token-free Unauthenticated error. Treated as a refusal of the token, so the
 * provider is told and the call is tried once more with a fresh one.
 */
export function setHeader(header: Headers, name: string, value: string): void {
  try {
    header.set(name, value);
  } catch {
    throw new ConnectError(
      `Not authenticated (the request was not sent): what the token provider gave makes no valid \`${name}\` header value (a token is visible ASCII only)`,
      Code.Unauthenticated,
    );
  }
}

/** The call's failure when no token (or proof) could be had; `cause` is the provider's error. */
export function unauthenticated(cause: unknown, afterRefusal: boolean): ConnectError {
  const why = cause instanceof Error ? cause.message : "no access token could be obtained";
  const what = afterRefusal
    ? "the server refused the access token and no new one could be had"
    : "no access token, the request was not sent";
  return new ConnectError(`Not authenticated (${what}): ${why}`, Code.Unauthenticated, undefined, undefined, cause);
}

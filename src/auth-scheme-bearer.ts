/**
 * The bearer scheme (RFC 6750): `authorization: Bearer <token>` on every attempt, nothing
 * to wait for (so the interceptor's fast path can set it in place), nothing to read from a
 * server's answers, and every refusal asks for a fresh token but a step-up or scope
 * challenge (auth-challenge.ts), which fails the call.
 */
import type { StreamRequest, UnaryRequest } from "@connectrpc/connect";
import { challengeFailure } from "./auth-challenge.js";
import { type AuthScheme, NEW_TOKEN, setHeader } from "./auth-scheme.js";

export function bearerScheme(): AuthScheme {
  // The header value of the last token, made once: a token is the same for many calls, and
  // building `Bearer <token>` anew (about 1 KB for a JWT) each time costs a copy per call.
  let lastToken: string | undefined;
  let lastValue = "";
  const authorizationOf = (token: string) => {
    if (token !== lastToken) {
      lastValue = `Bearer ${token}`;
      lastToken = token;
    }
    return lastValue;
  };
  return {
    authorize<R extends UnaryRequest | StreamRequest>(req: R, token: string): R {
      const header = new Headers(req.header);
      setHeader(header, "authorization", authorizationOf(token));
      return { ...req, header };
    },
    authorizationOf,
    note() {}, // a bearer call looks at no header
    answer(url, refusal) {
      const error = challengeFailure("Bearer", url, refusal);
      return error === undefined ? NEW_TOKEN : { kind: "fail", error };
    },
  };
}

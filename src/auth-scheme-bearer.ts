/**
 * The bearer scheme (RFC 6750): `authorization: Bearer <token>` on every attempt, nothing
 * to wait for (so the interceptor's fast path can set it in place), nothing to read from a
 * server's answers, and every refusal asks for a fresh token.
 */
import type { StreamRequest, UnaryRequest } from "@connectrpc/connect";
import { type AuthScheme, NEW_TOKEN, setHeader } from "./auth-scheme.js";

export function bearerScheme(): AuthScheme {
  const setAtOnce = (header: Headers, token: string) => setHeader(header, "authorization", `Bearer ${token}`);
  return {
    authorize<R extends UnaryRequest | StreamRequest>(req: R, token: string): R {
      const header = new Headers(req.header);
      setAtOnce(header, token);
      return { ...req, header };
    },
    setAtOnce,
    note() {}, // a bearer call looks at no header
    answer: () => NEW_TOKEN,
  };
}

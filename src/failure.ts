/**
 * What a failed exchange with the identity provider means, read off whatever error
 * openid-client (or fetch) threw — and a token-free summary of it (`ExchangeFailure`) to keep as `cause`.
 * openid-client's errors may hold the whole response body (new tokens included) or the
 * callback parameters in their cause chain; none of that may reach a caller.
 */
import { ConnectOidcError } from "./errors.js";
import { type FailureFacts, isTerminal } from "./policy.js";

/**
 * A token-free stand-in for a third-party error (openid-client's errors may carry the
 * identity provider's whole response body, tokens included, in their `cause` chain).
 * Keeps only what helps diagnose: the HTTP status, the OAuth error code and the
 * library's own error code.
 */
export class ExchangeFailure extends Error {
  readonly status?: number;
  readonly error?: string;
  readonly code?: string;
  constructor(message: string, facts: { status?: number; error?: string; code?: string }) {
    super(message);
    this.name = "ExchangeFailure";
    if (facts.status !== undefined) this.status = facts.status;
    if (facts.error !== undefined) this.error = facts.error;
    if (facts.code !== undefined) this.code = facts.code;
  }
}

// RFC 6749 §5.2: error codes are NQSCHAR (%x20-21 / %x23-5B / %x5D-7E); we also refuse space.
const OAUTH_ERROR_CODE = /^[\x21\x23-\x5B\x5D-\x7E]{1,64}$/;
// openid-client / oauth4webapi codes: OAUTH_SOMETHING, ERR_SOMETHING; Node's: ECONNREFUSED.
const LIBRARY_CODE = /^[A-Z][A-Z0-9_]{1,63}$/;

/** An OAuth `error` value if it is one (RFC 6749's characters, short); otherwise undefined. */
export function oauthErrorCode(value: unknown): string | undefined {
  return typeof value === "string" && OAUTH_ERROR_CODE.test(value) ? value : undefined;
}

/** What the policy needs to know of a failed exchange: the HTTP status and OAuth error code. */
export function failureFacts(error: unknown): FailureFacts {
  if (typeof error !== "object" || error === null) return {};
  const e = error as { status?: unknown; error?: unknown; cause?: unknown };
  let status = typeof e.status === "number" ? e.status : undefined;
  let code = oauthErrorCode(e.error);
  // A 401 with WWW-Authenticate carries its error in the parsed challenges.
  if (code === undefined && Array.isArray(e.cause)) {
    for (const challenge of e.cause as { parameters?: { error?: unknown } }[]) {
      code ??= oauthErrorCode(challenge?.parameters?.error);
    }
  }
  // A non-conforming answer (e.g. an HTML 503) carries the Response as its cause.
  if (status === undefined && typeof Response !== "undefined" && e.cause instanceof Response) status = e.cause.status;
  return { ...(status !== undefined ? { status } : {}), ...(code !== undefined ? { error: code } : {}) };
}

/** The library's (or the platform's) own error code, when it is a plain constant. */
export function libraryCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && LIBRARY_CODE.test(code) ? code : undefined;
}

/** Node's codes for a TLS certificate this process does not trust (or that does not fit the host). */
const UNTRUSTED_CERTIFICATE = /^(?:UNABLE_TO_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED|CERT_|ERR_TLS_CERT_ALTNAME)/;

/** The code of an untrusted TLS certificate anywhere in the cause chain (fetch wraps it in a TypeError). */
export function untrustedCertificate(error: unknown, depth = 0): string | undefined {
  if (typeof error !== "object" || error === null || depth > 5) return undefined;
  const code = libraryCode(error);
  if (code !== undefined && UNTRUSTED_CERTIFICATE.test(code)) return code;
  return untrustedCertificate((error as { cause?: unknown }).cause, depth + 1);
}

/** A short, token-free description of a failed exchange for error messages. */
export function describeFailure(error: unknown): string {
  // Our own errors (a store or lock failure) already say what happened, token-free.
  if (error instanceof ConnectOidcError) return error.message;
  if (error instanceof ExchangeFailure) return error.message;
  const facts = failureFacts(error);
  const code = libraryCode(error);
  if (code === "OAUTH_TIMEOUT" || (error as Error | null)?.name === "TimeoutError") return "the identity provider did not answer in time";
  if (facts.error !== undefined) return `the identity provider answered ${facts.status ?? "with"} ${facts.error}`;
  // No OAuth error here: the status alone decided (policy.ts), and a terminal one is a refusal.
  if (facts.status !== undefined && isTerminal(facts)) {
    return `the identity provider answered HTTP ${facts.status} without an OAuth error (not a standard answer)`;
  }
  if (facts.status !== undefined) return `the identity provider answered HTTP ${facts.status}`;
  const certificate = untrustedCertificate(error);
  if (certificate !== undefined) {
    return `the identity provider's TLS certificate is not trusted (${certificate}): trust its CA in a \`fetch\` of your own, or with NODE_EXTRA_CA_CERTS for the whole process`;
  }
  if (error instanceof TypeError && code === undefined) return "the identity provider could not be reached";
  if (code !== undefined) return `the request failed (${code})`;
  return "the request failed";
}

/**
 * The error to keep as `cause`: our own errors as they are (they hold no tokens), anything
 * else replaced by an `ExchangeFailure` with the status, OAuth error code and library code.
 */
export function summarizeFailure(error: unknown): Error {
  if (error instanceof ConnectOidcError || error instanceof ExchangeFailure) return error;
  const facts = failureFacts(error);
  const code = libraryCode(error);
  return new ExchangeFailure(describeFailure(error), { ...facts, ...(code !== undefined ? { code } : {}) });
}

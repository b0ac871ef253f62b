/**
 * The auth interceptor: puts a bearer token (or a DPoP-bound token with a fresh proof) on
 * every request and, when a server still says Unauthenticated, asks for a new token (or,
 * for a DPoP nonce challenge, takes the nonce) and re-sends the request once.
 * It knows nothing of OIDC: tokens and proofs come from a TokenProvider.
 */
import { Code, ConnectError, type Interceptor, type StreamRequest, type StreamResponse, type UnaryRequest } from "@connectrpc/connect";
import { abortable } from "./abortable.js";
import { nonceProblem } from "./dpop-proof.js";
import { ConfigurationError } from "./errors.js";
import type { TokenProvider } from "./types.js";
import { hasChallengeError } from "./www-authenticate.js";

/**
 * Options of {@link createAuthInterceptor}.
 *
 * @example
 * ```ts
 * import { createAuthInterceptor } from "connect-oidc";
 *
 * // Without the reactive retry: an Unauthenticated answer reaches the caller as it is
 * // (the refused token is still reported, so the next call gets a fresh one).
 * const interceptor = createAuthInterceptor(tokens, { retry: false });
 * ```
 */
export interface AuthInterceptorOptions {
  /** Reactive retry on Unauthenticated; default true. */
  readonly retry?: boolean;
  /**
   * DPoP only: set it as on the Connect transport (`useHttpGet`). That transport sends
   * side-effect-free unary methods as HTTP GET after the interceptors ran, and a proof's
   * `htm` must name the method sent. Default false.
   */
  readonly useHttpGet?: boolean;
  /** Told of every re-sent call (connect-oidc/otel's `onEvent` counts them). Must not throw; a throw is ignored. */
  readonly onEvent?: (event: AuthInterceptorEvent) => void;
}

/**
 * What {@link createAuthInterceptor} tells its `onEvent`: a call refused with
 * Unauthenticated was re-sent, with a fresh token (`token-refused`) or with the nonce a
 * DPoP server asked for (`dpop-nonce`). Never contains token material.
 *
 * @example
 * ```ts
 * import { type AuthInterceptorEvent, createAuthInterceptor } from "connect-oidc";
 *
 * let retries = 0;
 * const onEvent = (event: AuthInterceptorEvent) => event.type === "retried" && retries++;
 * const interceptor = createAuthInterceptor(tokens, { onEvent });
 * ```
 */
export type AuthInterceptorEvent = { readonly type: "retried"; readonly cause: "token-refused" | "dpop-nonce" };

/**
 * A Connect interceptor that puts `authorization: Bearer <token>` on every call and, when a
 * server answers Unauthenticated, re-sends a unary or server-streaming call once with a
 * fresh token. Every refusal that is not retried (of the re-sent attempt, of a client-streaming
 * or bidi call, or mid-stream after the first response message) is reported to the provider
 * so the next call gets a fresh token; a call that succeeded is reported through the
 * provider's optional `accepted(token)`. A call that already has an `authorization` header
 * is left alone. When no token can be had, the call fails with `Code.Unauthenticated`
 * whose `cause` is the token error; the call's deadline or signal ends a wait for a token
 * even when the provider ignores the signal.
 *
 * @example
 * ```ts
 * import { createClient } from "@connectrpc/connect";
 * import { createConnectTransport } from "@connectrpc/connect-node";
 * import { createAuthInterceptor, createTokenManager } from "connect-oidc";
 *
 * const tokens = createTokenManager({ issuer: "https://login.example.com", clientId: "my-cli" });
 * const transport = createConnectTransport({
 *   baseUrl: "https://api.example.com",
 *   httpVersion: "2",
 *   interceptors: [createAuthInterceptor(tokens)],
 * });
 * const client = createClient(MyService, transport);
 * ```
 */
export function createAuthInterceptor(tokens: TokenProvider, options: AuthInterceptorOptions = {}): Interceptor {
  if (typeof tokens?.getAccessToken !== "function") {
    throw new ConfigurationError("createAuthInterceptor: `tokens` must have getAccessToken() (e.g. a createTokenManager() result)");
  }
  const retry = options.retry ?? true;
  const dpop = tokens.dpop;
  const useHttpGet = options.useHttpGet === true;
  const notify = (event: AuthInterceptorEvent) => {
    try {
      options.onEvent?.(event);
    } catch {
      // A listener's failure must not break the call.
    }
  };

  const token = async (signal: AbortSignal, rejected?: string): Promise<string> => {
    try {
      // Raced here too: a provider that ignores the signal must not hold the call past its deadline.
      return await abortable(tokens.getAccessToken(rejected === undefined ? { signal } : { signal, rejected }), signal);
    } catch (error) {
      if (signal.aborted) throw ConnectError.from(signal.reason, Code.Canceled);
      throw unauthenticated(error, rejected !== undefined);
    }
  };

  // Tell the provider the token was refused, so the next call gets a fresh one; never fails.
  // Not tied to the call's signal: that one is aborted as soon as the call has failed.
  // A DPoP nonce challenge says nothing of the token: not reported.
  const report = (error: unknown, rejected: string) => {
    if (!isRefusal(error) || (dpop !== undefined && isNonceChallenge(error))) return;
    tokens.getAccessToken({ rejected }).catch(() => {});
  };

  // Every DPoP-Nonce a server sends (headers, trailers, an error's metadata) is the latest for its origin.
  const noteNonce = (url: string, headers: Headers | undefined) => {
    if (dpop === undefined) return; // a bearer call looks at no header
    const nonce = headers?.get("dpop-nonce");
    if (nonce === null || nonce === undefined) return;
    try {
      dpop.nonce(url, nonce);
    } catch {
      // `nonce` must not throw; a provider's failure costs at most a nonce round trip.
    }
  };
  const noteErrorNonce = (url: string, error: unknown) => {
    if (error instanceof ConnectError) noteNonce(url, error.metadata);
  };

  /** A copy of the request for one attempt, with the token (and for DPoP a fresh proof for this URL). */
  const authorize = async <R extends UnaryRequest | StreamRequest>(req: R, token: string): Promise<R> => {
    const header = new Headers(req.header);
    if (dpop === undefined) {
      setHeader(header, "authorization", `Bearer ${token}`);
      return { ...req, header };
    }
    let proof: string;
    try {
      proof = await abortable(dpop.proof({ method: httpMethod(req, useHttpGet), url: req.url, accessToken: token }), req.signal);
    } catch (error) {
      if (req.signal.aborted) throw ConnectError.from(req.signal.reason, Code.Canceled);
      const failure = unauthenticated(error, false);
      unsent.add(failure);
      throw failure;
    }
    setHeader(header, "authorization", `DPoP ${token}`);
    setHeader(header, "dpop", proof);
    return { ...req, header };
  };

  // Tell the provider a call sent with `token` succeeded. `accepted` must not throw; if it
  // does anyway (or is async and rejects), that is no reason to fail a call that succeeded.
  const accept = (token: string) => {
    try {
      const result: unknown = tokens.accepted?.(token);
      if (result instanceof Promise) result.catch(() => {});
    } catch {
      // ignored: see above
    }
  };

  return (next) => async (req) => {
    if (req.header.has("authorization")) return next(req);
    const first = await token(req.signal);
    if (!req.stream) return unary(next, req, first);
    if (req.method.methodKind === "server_streaming") return serverStream(next, req, first);
    return otherStream(next, req, first);
  };

  async function unary(next: Next, req: UnaryRequest, sent: string) {
    return withOneRetry(req, sent, async (t) => {
      const res = await next(await authorize(req, t));
      noteNonce(req.url, res.header);
      noteNonce(req.url, res.trailer);
      accept(t);
      return res;
    });
  }

  async function serverStream(next: Next, req: StreamRequest, sent: string) {
    // The request's iterable can be read only once: read the one message now, re-send it on retry.
    const messages: unknown[] = [];
    for await (const m of req.message) messages.push(m);
    return withOneRetry(req, sent, async (t) =>
      openStream(next, { ...(await authorize(req, t)), message: replay(messages) } as StreamRequest, t),
    );
  }

  /**
   * Call, then read the first response message, so an Unauthenticated before it surfaces here
   * (and can be retried); one after it cannot be retried and is reported.
   */
  async function openStream(next: Next, req: StreamRequest, sent: string): Promise<StreamResponse> {
    const res = (await next(req)) as StreamResponse;
    noteNonce(req.url, res.header);
    const it = res.message[Symbol.asyncIterator]();
    const first = await it.next();
    // A first message, or an end without error: the server took the token.
    accept(sent);
    if (first.done) noteNonce(req.url, res.trailer);
    return {
      ...res,
      message: (async function* () {
        try {
          if (first.done) return;
          yield first.value;
          for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
          noteNonce(req.url, res.trailer);
        } catch (error) {
          noteErrorNonce(req.url, error);
          report(error, sent);
          throw error;
        } finally {
          // A consumer that stops early ends the underlying stream too.
          await it.return?.();
        }
      })(),
    };
  }

  /**
   * Run `attempt` with the token sent; on Unauthenticated, once more: with the same token and
   * the server's new nonce for a DPoP nonce challenge, else with a fresh token. A refusal of
   * that second attempt is reported, never retried.
   */
  async function withOneRetry<T>(req: UnaryRequest | StreamRequest, sent: string, attempt: (token: string) => Promise<T>): Promise<T> {
    try {
      return await attempt(sent);
    } catch (error) {
      noteErrorNonce(req.url, error);
      if (!isRefusal(error)) throw error;
      if (!retry) {
        report(error, sent);
        throw error;
      }
      // A nonce challenge: the nonce is noted and the next proof carries it; no new token for it.
      const nonceChallenge = dpop !== undefined && isNonceChallenge(error);
      const unusable = nonceChallenge ? unusableNonceChallenge(req.url, error) : undefined;
      if (unusable !== undefined) throw unusable;
      const fresh = nonceChallenge ? sent : await token(req.signal, sent);
      if (!nonceChallenge && fresh === sent) throw error;
      notify({ type: "retried", cause: nonceChallenge ? "dpop-nonce" : "token-refused" });
      try {
        return await attempt(fresh);
      } catch (again) {
        noteErrorNonce(req.url, again);
        report(again, fresh);
        throw again;
      }
    }
  }

  // Client-streaming and bidi: the request stream cannot be re-sent, but the refusal is reported.
  async function otherStream(next: Next, req: StreamRequest, sent: string) {
    let res: StreamResponse;
    try {
      res = (await next(await authorize(req, sent))) as StreamResponse;
    } catch (error) {
      noteErrorNonce(req.url, error);
      report(error, sent);
      throw error;
    }
    noteNonce(req.url, res.header);
    const source = res.message;
    let acceptedOnce = false;
    const acceptOnce = () => {
      if (acceptedOnce) return;
      acceptedOnce = true;
      accept(sent);
    };
    return {
      ...res,
      message: (async function* () {
        try {
          for await (const m of source) {
            acceptOnce();
            yield m;
          }
          acceptOnce();
          noteNonce(req.url, res.trailer);
        } catch (error) {
          noteErrorNonce(req.url, error);
          report(error, sent);
          throw error;
        }
      })(),
    };
  }
}

type Next = Parameters<Interceptor>[0];

/** MethodOptions.IdempotencyLevel.NO_SIDE_EFFECTS (not imported: @bufbuild/protobuf/wkt would load with the entry). */
const NO_SIDE_EFFECTS = 1;

/**
 * The HTTP method the request goes out with: POST, or GET for a side-effect-free unary call
 * on a Connect transport with `useHttpGet` (which turns it into a GET after the interceptors).
 */
function httpMethod(req: UnaryRequest | StreamRequest, useHttpGet: boolean): string {
  if (useHttpGet && !req.stream && (req.method.idempotency as number) === NO_SIDE_EFFECTS) return "GET";
  return req.requestMethod;
}

/**
 * A DPoP nonce challenge (RFC 9449 §9): a `DPoP` challenge with `error="use_dpop_nonce"`
 * among the `WWW-Authenticate` challenges (another scheme's `error` is not one), whether or
 * not its `DPoP-Nonce` can be used.
 */
function isNonceChallenge(error: unknown): error is ConnectError {
  if (!(error instanceof ConnectError) || error.code !== Code.Unauthenticated) return false;
  return hasChallengeError(error.metadata.get("www-authenticate"), "DPoP", "use_dpop_nonce");
}

/**
 * A nonce challenge whose `DPoP-Nonce` cannot be used: re-sending with the old nonce would
 * only be refused again, so the call fails now, naming the server's broken answer.
 */
function unusableNonceChallenge(url: string, challenge: ConnectError): ConnectError | undefined {
  const problem = nonceProblem(challenge.metadata.get("dpop-nonce"));
  if (problem === undefined) return undefined;
  const cause = new Error(`the server at ${new URL(url).origin} asked for a DPoP nonce (use_dpop_nonce) but sent ${problem}`, {
    cause: challenge,
  });
  return new ConnectError(
    `Not authenticated (${cause.message}): the call was not re-sent; the server must send a valid DPoP-Nonce with its challenge`,
    Code.Unauthenticated,
    challenge.metadata,
    undefined,
    cause,
  );
}

/**
 * `Headers.set`, whose refusal (a value with CR, LF, NUL or beyond Latin-1) quotes the value:
 * replaced by a token-free Unauthenticated error. Treated as a refusal of the token, so the
 * provider is told and the call is tried once more with a fresh one.
 */
function setHeader(header: Headers, name: string, value: string): void {
  try {
    header.set(name, value);
  } catch {
    throw new ConnectError(
      `Not authenticated (the request was not sent): what the token provider gave makes no valid \`${name}\` header value (a token is visible ASCII only)`,
      Code.Unauthenticated,
    );
  }
}

async function* replay(messages: readonly unknown[]) {
  yield* messages;
}

/** Failures of a request never sent (no proof could be made): no server refused its token. */
const unsent = new WeakSet<object>();

/** A server said Unauthenticated to a request that was sent. */
function isRefusal(error: unknown): boolean {
  return isUnauthenticated(error) && !(typeof error === "object" && error !== null && unsent.has(error));
}

function isUnauthenticated(error: unknown): boolean {
  return error instanceof ConnectError ? error.code === Code.Unauthenticated : ConnectError.from(error).code === Code.Unauthenticated;
}

function unauthenticated(cause: unknown, afterRefusal: boolean): ConnectError {
  const why = cause instanceof Error ? cause.message : "no access token could be obtained";
  const what = afterRefusal
    ? "the server refused the access token and no new one could be had"
    : "no access token, the request was not sent";
  return new ConnectError(`Not authenticated (${what}): ${why}`, Code.Unauthenticated, undefined, undefined, cause);
}

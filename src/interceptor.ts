/**
 * The auth interceptor: puts a token on every request through the scheme chosen once when
 * it is made (bearer, or DPoP with a fresh proof: auth-scheme-*.ts) and, when a server still
 * says Unauthenticated, asks for a new token (or, for a DPoP nonce challenge, takes the
 * nonce) and re-sends the request once. A call whose bearer token is at hand (the provider's
 * `current()`) goes to `next` without waiting for any promise.
 * It knows nothing of OIDC: tokens and proofs come from a TokenProvider.
 */
import { Code, ConnectError, type Interceptor, type StreamRequest, type StreamResponse, type UnaryRequest } from "@connectrpc/connect";
import { abortable } from "./abortable.js";
import { type AuthScheme, RequestNotSent, unauthenticated } from "./auth-scheme.js";
import { bearerScheme } from "./auth-scheme-bearer.js";
import { dpopScheme } from "./auth-scheme-dpop.js";
import { ConfigurationError } from "./errors.js";
import type { TokenProvider } from "./types.js";

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
  const scheme = tokens.dpop === undefined ? bearerScheme() : dpopScheme(tokens.dpop, options.useHttpGet === true);
  if (options.onEvent !== undefined && typeof options.onEvent !== "function") {
    throw new ConfigurationError("createAuthInterceptor: `onEvent` must be a function");
  }
  const call: Call = { tokens, scheme, retry: options.retry ?? true, onEvent: options.onEvent };
  const authorizationOf = scheme.authorizationOf;
  if (authorizationOf === undefined || typeof tokens.current !== "function") {
    return (next) => (req) => (req.header.has("authorization") ? send(next, req) : authorized(call, next, req));
  }
  // The fast path: a unary call whose token is at hand gets its header in place (no copy, no
  // await) and goes to `next` at once. The header is taken off again when the call ends (an
  // outer interceptor that re-sends the same request then gets a token of its own); a refusal
  // takes the reactive path below with a copy of the headers, like any other call. Written
  // flat: at one call in flight it runs with cold caches, where every function and object it
  // touches costs.
  return (next) => (req) => {
    if (req.header.has("authorization")) return send(next, req);
    const token = req.stream ? undefined : current(tokens);
    if (token === undefined) return authorized(call, next, req);
    try {
      req.header.set("authorization", authorizationOf(token));
    } catch {
      return unary(call, next, req as UnaryRequest, token); // meets the same refusal there, and answers it
    }
    return send(next, req).then(
      (res) => {
        req.header.delete("authorization");
        accept(tokens, token);
        return res;
      },
      (error: unknown) => {
        req.header.delete("authorization");
        return afterFailure(call, req, token, error, (t) => unaryAttempt(call, next, req as UnaryRequest, t));
      },
    );
  };
}

/** What every call of one interceptor shares: its provider, its scheme, whether it retries. */
interface Call {
  readonly tokens: TokenProvider;
  readonly scheme: AuthScheme;
  readonly retry: boolean;
  readonly onEvent: ((event: AuthInterceptorEvent) => void) | undefined;
}

type Next = Parameters<Interceptor>[0];
type Response = Awaited<ReturnType<Next>>;

/** `next(req)`, a synchronous throw turned into a rejection (as from an async function). */
function send(next: Next, req: UnaryRequest | StreamRequest): Promise<Response> {
  try {
    return next(req);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The provider's token at hand, if any; a `current()` that throws anyway counts as none. */
function current(tokens: TokenProvider): string | undefined {
  try {
    return tokens.current?.();
  } catch {
    return undefined;
  }
}

/** A call without a token at hand, a stream, or a DPoP call: wait for the token, then send. */
async function authorized(call: Call, next: Next, req: UnaryRequest | StreamRequest): Promise<Response> {
  const first = current(call.tokens) ?? (await token(call.tokens, req.signal));
  if (!req.stream) return unary(call, next, req, first);
  if (req.method.methodKind === "server_streaming") return serverStream(call, next, req, first);
  return otherStream(call, next, req, first);
}

async function token(tokens: TokenProvider, signal: AbortSignal, rejected?: string): Promise<string> {
  try {
    // Raced here too: a provider that ignores the signal must not hold the call past its deadline.
    return await abortable(tokens.getAccessToken(rejected === undefined ? { signal } : { signal, rejected }), signal);
  } catch (error) {
    if (signal.aborted) throw ConnectError.from(signal.reason, Code.Canceled);
    throw unauthenticated(error, rejected !== undefined);
  }
}

function unary(call: Call, next: Next, req: UnaryRequest, sent: string) {
  return withOneRetry(call, req, sent, (t) => unaryAttempt(call, next, req, t));
}

async function unaryAttempt(call: Call, next: Next, req: UnaryRequest, token: string) {
  const res = await next(await call.scheme.authorize(req, token));
  call.scheme.note(req.url, res.header);
  call.scheme.note(req.url, res.trailer);
  accept(call.tokens, token);
  return res;
}

async function serverStream(call: Call, next: Next, req: StreamRequest, sent: string) {
  // The request's iterable can be read only once: read the one message now, re-send it on retry.
  const messages: unknown[] = [];
  for await (const m of req.message) messages.push(m);
  return withOneRetry(call, req, sent, async (t) =>
    openStream(call, next, { ...(await call.scheme.authorize(req, t)), message: replay(messages) } as StreamRequest, t),
  );
}

/**
 * Call, then read the first response message, so an Unauthenticated before it surfaces here
 * (and can be retried); one after it cannot be retried and is reported.
 */
async function openStream(call: Call, next: Next, req: StreamRequest, sent: string): Promise<StreamResponse> {
  const { scheme } = call;
  const res = (await next(req)) as StreamResponse;
  scheme.note(req.url, res.header);
  const it = res.message[Symbol.asyncIterator]();
  const first = await it.next();
  // A first message, or an end without error: the server took the token.
  accept(call.tokens, sent);
  if (first.done) scheme.note(req.url, res.trailer);
  return {
    ...res,
    message: (async function* () {
      try {
        if (first.done) return;
        yield first.value;
        for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
        scheme.note(req.url, res.trailer);
      } catch (error) {
        noteError(scheme, req.url, error);
        throw report(call, req.url, error, sent);
      } finally {
        // A consumer that stops early ends the underlying stream too.
        await it.return?.();
      }
    })(),
  };
}

/** Run `attempt` with the token sent; on Unauthenticated, once more (see {@link afterFailure}). */
async function withOneRetry<T>(
  call: Call,
  req: UnaryRequest | StreamRequest,
  sent: string,
  attempt: (token: string) => Promise<T>,
): Promise<T> {
  try {
    return await attempt(sent);
  } catch (error) {
    return afterFailure(call, req, sent, error, attempt);
  }
}

/**
 * The first attempt, sent with `sent`, failed with `error`. A step-up or scope challenge
 * fails the call at once (see auth-challenge.ts). On Unauthenticated, `attempt` once more:
 * with the same token and the server's new nonce for a DPoP nonce challenge, else with a
 * fresh token. A refusal of that second attempt is reported, never retried.
 */
async function afterFailure<T>(
  call: Call,
  req: UnaryRequest | StreamRequest,
  sent: string,
  error: unknown,
  attempt: (token: string) => Promise<T>,
): Promise<T> {
  if (error instanceof RequestNotSent) throw error.failure;
  noteError(call.scheme, req.url, error);
  const answer = call.scheme.answer(req.url, error);
  // A challenge no token answers (step-up, insufficient scope; any code): fail now, report nothing.
  if (answer.kind === "fail") throw answer.error;
  if (!isUnauthenticated(error)) throw error;
  if (!call.retry) {
    if (answer.kind === "new-token") reportRefused(call.tokens, sent);
    throw error;
  }
  const fresh = answer.kind === "same-token" ? sent : await token(call.tokens, req.signal, sent);
  if (answer.kind === "new-token" && fresh === sent) throw error;
  notify(call, { type: "retried", cause: answer.kind === "same-token" ? "dpop-nonce" : "token-refused" });
  try {
    return await attempt(fresh);
  } catch (again) {
    if (again instanceof RequestNotSent) throw again.failure;
    noteError(call.scheme, req.url, again);
    throw report(call, req.url, again, fresh);
  }
}

// Client-streaming and bidi: the request stream cannot be re-sent, but the refusal is reported.
async function otherStream(call: Call, next: Next, req: StreamRequest, sent: string) {
  const { scheme } = call;
  let res: StreamResponse;
  try {
    res = (await next(await scheme.authorize(req, sent))) as StreamResponse;
  } catch (error) {
    if (error instanceof RequestNotSent) throw error.failure;
    noteError(scheme, req.url, error);
    throw report(call, req.url, error, sent);
  }
  scheme.note(req.url, res.header);
  const source = res.message;
  let acceptedOnce = false;
  const acceptOnce = () => {
    if (acceptedOnce) return;
    acceptedOnce = true;
    accept(call.tokens, sent);
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
        scheme.note(req.url, res.trailer);
      } catch (error) {
        noteError(scheme, req.url, error);
        throw report(call, req.url, error, sent);
      }
    })(),
  };
}

/** The server's answer in an error's metadata (DPoP: a nonce). */
function noteError(scheme: AuthScheme, url: string, error: unknown): void {
  if (error instanceof ConnectError) scheme.note(url, error.metadata);
}

/**
 * A refusal that is not retried: tell the provider the token was refused if `error` is a
 * refusal of it (a DPoP nonce challenge, a step-up or scope challenge is not). What to throw:
 * the scheme's failure for a challenge no token answers, else `error`.
 */
function report(call: Call, url: string, error: unknown, sent: string): unknown {
  const answer = call.scheme.answer(url, error);
  if (answer.kind === "fail") return answer.error;
  if (isUnauthenticated(error) && answer.kind === "new-token") reportRefused(call.tokens, sent);
  return error;
}

// Tell the provider the token was refused, so the next call gets a fresh one; never fails.
// Not tied to the call's signal: that one is aborted as soon as the call has failed.
function reportRefused(tokens: TokenProvider, rejected: string): void {
  tokens.getAccessToken({ rejected }).catch(() => {});
}

// Tell the provider a call sent with `token` succeeded. `accepted` must not throw; if it
// does anyway (or is async and rejects), that is no reason to fail a call that succeeded.
function accept(tokens: TokenProvider, token: string): void {
  try {
    const result: unknown = tokens.accepted?.(token);
    if (result instanceof Promise) result.catch(() => {});
  } catch {
    // ignored: see above
  }
}

async function* replay(messages: readonly unknown[]) {
  yield* messages;
}

function isUnauthenticated(error: unknown): boolean {
  return error instanceof ConnectError ? error.code === Code.Unauthenticated : ConnectError.from(error).code === Code.Unauthenticated;
}

/** Tells the interceptor's listener; a listener's failure must not break the call. */
function notify(call: Call, event: AuthInterceptorEvent): void {
  try {
    call.onEvent?.(event);
  } catch {
    // ignored: see AuthInterceptorOptions.onEvent
  }
}

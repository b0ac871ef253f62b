/**
 * The auth interceptor: puts a bearer token on every request and, when a server
 * still says Unauthenticated, asks for a new token and re-sends the request once.
 * It knows nothing of OIDC: tokens come from a TokenProvider.
 */
import { Code, ConnectError, type Interceptor, type StreamRequest, type StreamResponse, type UnaryRequest } from "@connectrpc/connect";
import { abortable } from "./abortable.js";
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
}

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
  const report = (rejected: string) => {
    tokens.getAccessToken({ rejected }).catch(() => {});
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
    return withOneRetry(req.signal, sent, async (t) => {
      const res = await next(withToken(req, t));
      accept(t);
      return res;
    });
  }

  async function serverStream(next: Next, req: StreamRequest, sent: string) {
    // The request's iterable can be read only once: read the one message now, re-send it on retry.
    const messages: unknown[] = [];
    for await (const m of req.message) messages.push(m);
    return withOneRetry(req.signal, sent, (t) => openStream(next, { ...withToken(req, t), message: replay(messages) } as StreamRequest, t));
  }

  /**
   * Call, then read the first response message, so an Unauthenticated before it surfaces here
   * (and can be retried); one after it cannot be retried and is reported.
   */
  async function openStream(next: Next, req: StreamRequest, sent: string): Promise<StreamResponse> {
    const res = (await next(req)) as StreamResponse;
    const it = res.message[Symbol.asyncIterator]();
    const first = await it.next();
    // A first message, or an end without error: the server took the token.
    accept(sent);
    return {
      ...res,
      message: (async function* () {
        try {
          if (first.done) return;
          yield first.value;
          for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
        } catch (error) {
          if (isUnauthenticated(error)) report(sent);
          throw error;
        } finally {
          // A consumer that stops early ends the underlying stream too.
          await it.return?.();
        }
      })(),
    };
  }

  /**
   * Run `attempt` with the token sent; on Unauthenticated, once more with a fresh token.
   * A refusal of that second attempt is reported, never retried.
   */
  async function withOneRetry<T>(signal: AbortSignal, sent: string, attempt: (token: string) => Promise<T>): Promise<T> {
    try {
      return await attempt(sent);
    } catch (error) {
      if (!isUnauthenticated(error)) throw error;
      if (!retry) {
        report(sent);
        throw error;
      }
      const fresh = await token(signal, sent);
      if (fresh === sent) throw error;
      try {
        return await attempt(fresh);
      } catch (again) {
        if (isUnauthenticated(again)) report(fresh);
        throw again;
      }
    }
  }

  // Client-streaming and bidi: the request stream cannot be re-sent, but the refusal is reported.
  async function otherStream(next: Next, req: StreamRequest, sent: string) {
    let res: StreamResponse;
    try {
      res = (await next(withToken(req, sent))) as StreamResponse;
    } catch (error) {
      if (isUnauthenticated(error)) report(sent);
      throw error;
    }
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
        } catch (error) {
          if (isUnauthenticated(error)) report(sent);
          throw error;
        }
      })(),
    };
  }
}

type Next = Parameters<Interceptor>[0];

// Each attempt gets its own copy of the headers: transports edit them in place.
function withToken<R extends UnaryRequest | StreamRequest>(req: R, token: string): R {
  const header = new Headers(req.header);
  header.set("authorization", `Bearer ${token}`);
  return { ...req, header };
}

async function* replay(messages: readonly unknown[]) {
  yield* messages;
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

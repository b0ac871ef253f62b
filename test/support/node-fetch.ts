/**
 * A `fetch` for the `fetch` option made of node:http / node:https, as a user without undici
 * would write one: plain-HTTP requests through a forward proxy (the absolute URL as the
 * request target, which every HTTP proxy forwards), a private CA to trust, and a client
 * certificate (mTLS). https through a proxy (CONNECT) is not covered here: undici's
 * `ProxyAgent` does that (see the README).
 */
import http from "node:http";
import https from "node:https";
import type { CustomFetch } from "../../src/index.js";

export interface NodeFetchOptions {
  /** Send plain-HTTP requests through this proxy (`http://host:port`). */
  readonly proxy?: string;
  /** PEM: the CA to trust instead of Node's bundled ones. */
  readonly ca?: string;
  /** PEM: a client certificate and its key, for mTLS. */
  readonly cert?: string;
  readonly key?: string;
}

export function nodeFetch(options: NodeFetchOptions = {}): CustomFetch {
  return (url, init) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      const proxy = options.proxy !== undefined && target.protocol === "http:" ? new URL(options.proxy) : undefined;
      const body = bodyOf(init.body);
      const headers: Record<string, string> = { host: target.host };
      new Headers(init.headers).forEach((value, name) => {
        headers[name] = value;
      });
      if (body !== undefined) headers["content-length"] = String(body.length);
      const send = target.protocol === "https:" ? https.request : http.request;
      const request = send(
        {
          host: proxy?.hostname ?? target.hostname,
          port: proxy?.port ?? target.port,
          path: proxy !== undefined ? target.href : `${target.pathname}${target.search}`,
          method: init.method ?? "GET",
          headers,
          // A connection per request: tinyproxy closes a client connection after each answer.
          agent: false,
          ...(init.signal ? { signal: init.signal } : {}),
          ...(options.ca !== undefined ? { ca: options.ca } : {}),
          ...(options.cert !== undefined ? { cert: options.cert, key: options.key } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", reject);
          res.on("end", () => resolve(responseOf(res, Buffer.concat(chunks))));
        },
      );
      request.on("error", reject);
      request.end(body);
    });
}

function bodyOf(body: RequestInit["body"]): Buffer | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string" || body instanceof URLSearchParams) return Buffer.from(body.toString());
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return Buffer.from(body as ArrayBuffer);
  throw new TypeError("nodeFetch: unsupported request body");
}

function responseOf(res: http.IncomingMessage, body: Buffer): Response {
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one);
  }
  const status = res.statusCode ?? 502;
  const empty = status === 204 || status === 304 || body.length === 0;
  return new Response(empty ? null : new Uint8Array(body), { status, statusText: res.statusMessage ?? "", headers });
}

/**
 * A real listener in front of the test IdP that serves it under its own origin: every
 * request is forwarded, and the IdP's origin in its JSON answers (the discovery document's
 * issuer and endpoints) is replaced by the proxy's own, `http://127.0.0.1:<port>` — reached
 * as `http://localhost:<port>`, it is an issuer alias. It counts every request it gets, and
 * can answer 404 to everything instead (a provider's deploy serving 404 for a while).
 * With `tls`, it serves HTTPS (`https://127.0.0.1:<port>`) with that certificate: a provider
 * behind a private CA, optionally asking for client certificates (mTLS).
 */
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";

export interface IdpProxy {
  /** `http://127.0.0.1:<port>` (`https://` with `tls`): the issuer the discovery document names. */
  readonly origin: string;
  readonly port: number;
  /** Every request received, whatever it was answered. */
  readonly requests: number;
  /** "pass": forward; "404": answer every request 404 with an empty body. */
  mode: "pass" | "404";
  close(): Promise<void>;
}

export interface IdpProxyTls {
  readonly cert: string;
  readonly key: string;
  /** Ask for a client certificate signed by this CA, and refuse the handshake without one. */
  readonly clientCa?: string;
}

export async function startIdpProxy(target: string, tls?: IdpProxyTls): Promise<IdpProxy> {
  const targetUrl = new URL(target);
  let requests = 0;
  let origin = "";
  const handler: http.RequestListener = (req, res) => {
    requests += 1;
    if (proxy.mode === "404") {
      res.writeHead(404, { "content-length": "0" }).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (typeof value === "string" && name !== "host" && name !== "accept-encoding" && name !== "connection") headers[name] = value;
      }
      fetch(new URL(req.url ?? "/", targetUrl), {
        method: req.method ?? "GET",
        headers,
        redirect: "manual",
        ...(req.method === "GET" || req.method === "HEAD" ? {} : { body: Buffer.concat(chunks) }),
      })
        .then(async (answer) => {
          let body = Buffer.from(await answer.arrayBuffer());
          if (answer.headers.get("content-type")?.includes("json")) {
            body = Buffer.from(body.toString("utf8").replaceAll(targetUrl.origin, origin));
          }
          const out: Record<string, string> = {};
          answer.headers.forEach((value, name) => {
            if (name !== "content-length" && name !== "content-encoding" && name !== "transfer-encoding" && name !== "connection") {
              out[name] = value;
            }
          });
          res.writeHead(answer.status, { ...out, "content-length": String(body.length) }).end(body);
        })
        .catch(() => res.writeHead(502, { "content-length": "0" }).end());
    });
  };
  const server =
    tls === undefined
      ? http.createServer(handler)
      : https.createServer(
          {
            cert: tls.cert,
            key: tls.key,
            ...(tls.clientCa !== undefined ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
          },
          handler,
        );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  origin = `${tls === undefined ? "http" : "https"}://127.0.0.1:${port}`;
  const proxy: IdpProxy = {
    origin,
    port,
    get requests() {
      return requests;
    },
    mode: "pass",
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return proxy;
}

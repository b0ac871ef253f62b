/**
 * What test/system/browser.test.ts needs around a real headless Chromium: a CORS-adding loopback
 * proxy in front of the test server (connect-node sets no CORS headers), a loopback page
 * server whose routes the test supplies, and Chromium itself (Debian's `chromium`), started
 * with the flags this machine needs and a fresh profile, and stopped with its children.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface LoopbackServer {
  /** http://127.0.0.1:port */
  readonly url: string;
  close(): Promise<void>;
}

async function listen(server: http.Server): Promise<LoopbackServer> {
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      })),
  };
}

/** What the CORS proxy saw, to show the browser really went through CORS. */
export interface CorsProxyStats {
  preflights: number;
  requests: number;
  /** Origin headers seen, distinct. */
  readonly origins: Set<string>;
}

/**
 * Forwards every request to `target` (an http://127.0.0.1 server) and adds CORS headers for
 * any origin: preflights are answered here (methods GET and POST, the headers asked for),
 * and responses expose the headers Connect, gRPC-web and the interceptor's errors use.
 */
export async function startCorsProxy(target: string): Promise<LoopbackServer & { readonly stats: CorsProxyStats }> {
  const stats: CorsProxyStats = { preflights: 0, requests: 0, origins: new Set() };
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    const origin = req.headers.origin;
    if (origin) stats.origins.add(origin);
    const cors: Record<string, string> = {
      "access-control-allow-origin": origin ?? "*",
      vary: "origin",
      // DPoP-Nonce: a DPoP client learns the server's nonce from every answer (RFC 9449 §9).
      "access-control-expose-headers": "grpc-status, grpc-message, grpc-status-details-bin, www-authenticate, dpop-nonce, content-encoding",
    };
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"]) {
      stats.preflights++;
      res.writeHead(204, {
        ...cors,
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": req.headers["access-control-request-headers"] ?? "",
        "access-control-max-age": "0", // every call preflights: the proxy sees them all
      });
      res.end();
      return;
    }
    stats.requests++;
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, { ...answer.headers, ...cors });
        answer.pipe(res);
      },
    );
    forward.on("error", () => {
      if (!res.headersSent) res.writeHead(502, cors);
      res.end();
    });
    req.pipe(forward);
  });
  return { ...(await listen(server)), stats };
}

export type Route = (body: string) => unknown | Promise<unknown>;

/**
 * Serves `html` at `/`, `script` at `/page.js`, and JSON answers from `routes`
 * (e.g. `"GET /config"`, `"POST /results"`): a route's return value is sent as JSON
 * (undefined: 204); a throw is a 500 with its message.
 */
export async function startPageServer(script: string, routes: Record<string, Route>): Promise<LoopbackServer> {
  const html = '<!doctype html><meta charset="utf-8"><title>connect-oidc</title><script type="module" src="/page.js"></script>';
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = new URL(req.url ?? "/", "http://page").pathname;
    if (req.method === "GET" && path === "/") return void res.writeHead(200, { "content-type": "text/html" }).end(html);
    if (req.method === "GET" && path === "/page.js") return void res.writeHead(200, { "content-type": "text/javascript" }).end(script);
    const route = routes[`${req.method} ${path}`];
    if (!route) return void res.writeHead(404).end();
    try {
      const value = await route(Buffer.concat(chunks).toString("utf8"));
      if (value === undefined) res.writeHead(204).end();
      else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(value));
    } catch (error) {
      res.writeHead(500, { "content-type": "text/plain" }).end(String(error));
    }
  });
  return listen(server);
}

/** The Chromium binary, or undefined when it is not installed. */
export function findChromium(): string | undefined {
  for (const name of ["chromium", "chromium-browser"]) {
    try {
      return execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim() || undefined;
    } catch {
      // not this one
    }
  }
  return undefined;
}

export interface Browser {
  /** What Chromium printed (for a failure message). */
  output(): string;
  /** Settles when the browser process exits. */
  readonly exited: Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * Headless Chromium on `url` with a fresh profile. The flags: no sandbox (root), no GPU,
 * and nothing that reaches out (QUIC, background networking, component updates, sync):
 * this machine's network is closed and Chromium would otherwise retry it.
 */
export async function launchChromium(binary: string, url: string): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), "connect-oidc-chromium-"));
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--user-data-dir=${profile}`,
    url,
  ];
  // Its own process group, so stop() ends the renderers and helpers too.
  const child: ChildProcess = spawn(binary, args, { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
    child.once("error", (error) => {
      output += String(error);
      resolve(null);
    });
  });
  return {
    output: () => output,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGTERM");
        } catch {
          // already gone
        }
        const timer = setTimeout(() => {
          try {
            process.kill(-child.pid!, "SIGKILL");
          } catch {
            // already gone
          }
        }, 5_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/**
 * A plain HTTP listener standing in for a DPoP resource server whose answers a test scripts:
 * it records every request (method, URL, authorization, proof) and answers each with the
 * next scripted answer (a status and headers, e.g. a 401 `use_dpop_nonce` challenge), else
 * with an empty Connect message. It has a request budget: past it, every request is answered
 * 500 `resource_exhausted` naming the bound, so a client stuck in a retry loop fails fast with
 * that message instead of spinning until an outer timeout.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedCall {
  readonly method: string;
  readonly url: string;
  readonly authorization: string | undefined;
  readonly dpop: string | undefined;
}

/** One scripted answer: an HTTP status with headers and a Connect error body. */
export interface ScriptedAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
}

export interface DpopRecorder {
  readonly baseUrl: string;
  /** The requests since the last `reset()`. */
  readonly seen: RecordedCall[];
  /** Answer the next requests with these, in order (after them: an empty message). */
  script(...answers: ScriptedAnswer[]): void;
  /** Forget the requests and the script. */
  reset(): void;
  close(): Promise<void>;
}

/** A 401 with these `WWW-Authenticate` and `DPoP-Nonce` headers (several values: several headers; undefined: none). */
export function nonceChallenge(wwwAuthenticate: string | readonly string[], nonce: string | readonly string[] | undefined): ScriptedAnswer {
  return { status: 401, headers: { "www-authenticate": wwwAuthenticate, ...(nonce !== undefined ? { "dpop-nonce": nonce } : {}) } };
}

/** `maxRequests`: the budget between two `reset()`s (default 8: no test here needs more than 3). */
export async function startDpopRecorder(options: { readonly maxRequests?: number } = {}): Promise<DpopRecorder> {
  const maxRequests = options.maxRequests ?? 8;
  const seen: RecordedCall[] = [];
  let answers: ScriptedAnswer[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: new URL(req.url ?? "/", `http://${req.headers.host}`).href,
        authorization: req.headers.authorization,
        dpop: req.headers.dpop as string | undefined,
      });
      if (seen.length > maxRequests) {
        res.writeHead(500, { "content-type": "application/json" });
        const message = `test bound: more than ${maxRequests} requests since reset() — a client retry loop?`;
        res.end(JSON.stringify({ code: "resource_exhausted", message }));
        return;
      }
      const answer = answers.shift();
      if (answer !== undefined) {
        res.writeHead(answer.status, { "content-type": "application/json", ...(answer.headers as Record<string, string | string[]>) });
        res.end(JSON.stringify({ code: "unauthenticated", message: "scripted refusal" }));
        return;
      }
      // An empty SayResponse in the transport's default (binary) format.
      res.writeHead(200, { "content-type": "application/proto" });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    script(...next) {
      answers.push(...next);
    },
    reset() {
      seen.length = 0;
      answers = [];
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

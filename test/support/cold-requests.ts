/**
 * Every request the test IdP receives (method and path), seen through Node's
 * `http.server.request.start` diagnostics channel: the IdP's own stats count token
 * requests only, and the cold-start bench and test must count discovery requests too.
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import type http from "node:http";
import type { AddressInfo } from "node:net";

export interface IdpRequests {
  /** `GET /.well-known/openid-configuration`, `POST /token`, ... since the last reset. */
  readonly seen: readonly string[];
  readonly discovery: number;
  readonly token: number;
  reset(): void;
  stop(): void;
}

export function watchIdpRequests(issuer: string): IdpRequests {
  const port = Number(new URL(issuer).port);
  let seen: string[] = [];
  const onRequest = (message: unknown) => {
    const { request, server } = message as { request: http.IncomingMessage; server: http.Server };
    if ((server.address() as AddressInfo | null)?.port !== port) return;
    seen.push(`${request.method} ${new URL(request.url ?? "/", "http://x").pathname}`);
  };
  subscribe("http.server.request.start", onRequest);
  return {
    get seen() {
      return seen;
    },
    get discovery() {
      return seen.filter((r) => r === "GET /.well-known/openid-configuration").length;
    },
    get token() {
      return seen.filter((r) => r === "POST /token").length;
    },
    reset() {
      seen = [];
    },
    stop() {
      unsubscribe("http.server.request.start", onRequest);
    },
  };
}

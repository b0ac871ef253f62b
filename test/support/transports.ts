/**
 * Every transport a user would pick, for suites that run the same checks on each: Connect
 * over HTTP/1.1 and HTTP/2, gRPC, gRPC-web (connect-node) and connect-web (fetch).
 */
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createConnectTransport as createWebTransport } from "@connectrpc/connect-web";
import type { TestServer } from "./server.js";

export type Kind = "connect-h1" | "connect-h2" | "grpc" | "grpc-web" | "connect-web";
export const KINDS: readonly Kind[] = ["connect-h1", "connect-h2", "grpc", "grpc-web", "connect-web"];
/** fetch cannot stream a request body: connect-web has no client-streaming or bidi calls. */
export const webOnly = (kind: Kind) => kind === "connect-web";
/** Bidi needs HTTP/2 (connect-node answers 505 to a bidi call over HTTP/1.1). */
export const hasBidi = (kind: Kind) => kind === "connect-h2" || kind === "grpc";
/** Which of the two test servers (HTTP/1.1, HTTP/2) a kind talks to. */
export const serverFor = (kind: Kind, h1: TestServer, h2: TestServer) => (kind === "connect-h2" || kind === "grpc" ? h2 : h1);

export function transportFor(kind: Kind, h1: TestServer, h2: TestServer, interceptors: Interceptor[]): Transport {
  switch (kind) {
    case "connect-h1":
      return createConnectTransport({ baseUrl: h1.baseUrl, httpVersion: "1.1", interceptors });
    case "connect-h2":
      return createConnectTransport({ baseUrl: h2.baseUrl, httpVersion: "2", interceptors });
    case "grpc":
      return createGrpcTransport({ baseUrl: h2.baseUrl, interceptors });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl: h1.baseUrl, httpVersion: "1.1", interceptors });
    case "connect-web":
      return createWebTransport({ baseUrl: h1.baseUrl, interceptors });
  }
}

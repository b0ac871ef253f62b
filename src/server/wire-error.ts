/**
 * A Connect error written as a complete response, before the request body was read, in the
 * shape of the request's protocol (with connect's own serializers):
 * - Connect unary (and GET): the HTTP status of the code, a JSON error body;
 * - Connect streaming: HTTP 200 and an end-stream message with the error;
 * - gRPC and gRPC-web: HTTP 200, trailers-only (`grpc-status`, `grpc-message` in the headers).
 * The error's metadata (the challenge, the DPoP nonce) goes into the response headers (for
 * Connect streaming, into the end-stream message, where a Connect client reads trailers).
 */
import type { ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, endStreamFlag, endStreamToJson, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";

export type WireProtocol = "connect-unary" | "connect-stream" | "grpc" | "grpc-web";

export function protocolOf(contentType: string | undefined): WireProtocol {
  const type = contentType?.toLowerCase() ?? "";
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  if (type.startsWith("application/connect+")) return "connect-stream";
  return "connect-unary";
}

export interface WireResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array | undefined;
}

export function wireResponseOf(protocol: WireProtocol, contentType: string | undefined, error: ConnectError): WireResponse {
  const metadata: Record<string, string> = {};
  error.metadata.forEach((value, key) => {
    metadata[key] = value;
  });
  switch (protocol) {
    case "connect-unary": {
      const body = errorToJsonBytes(error, undefined);
      return {
        status: codeToHttpStatus(error.code),
        headers: { ...metadata, "content-type": "application/json", "content-length": String(body.byteLength) },
        body,
      };
    }
    case "connect-stream": {
      const json = JSON.stringify(endStreamToJson(new Headers(), error, undefined));
      const body = encodeEnvelope(endStreamFlag, new TextEncoder().encode(json));
      const type = contentType?.toLowerCase().startsWith("application/connect+json")
        ? "application/connect+json"
        : "application/connect+proto";
      // The metadata travels in the end-stream message (as trailers), as connect-node sends it.
      return { status: 200, headers: { "content-type": type, "content-length": String(body.byteLength) }, body };
    }
    case "grpc":
    case "grpc-web": {
      const status = setTrailerStatus(new Headers(), error);
      const headers: Record<string, string> = { ...metadata, "content-type": contentType ?? `application/${protocol}+proto` };
      status.forEach((value, key) => {
        headers[key] = value;
      });
      return { status: 200, headers, body: undefined };
    }
  }
}

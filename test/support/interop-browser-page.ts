/**
 * The page test/system/interop-browser.test.ts runs in headless Chromium: connect-web's Connect and
 * gRPC-web transports with nothing of connect-oidc — a fixed `authorization` header set by a
 * three-line interceptor — against a server built with `connect-oidc/testing` (through a CORS
 * proxy). Each call's outcome (the subject the server saw, or the error's code and
 * `WWW-Authenticate` challenge) is posted to POST /results.
 */
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";

export interface InteropPageConfig {
  /** The test server, through the CORS proxy. */
  readonly api: string;
  /** A valid access token of the test identity provider. */
  readonly token: string;
}

export interface InteropOutcome {
  readonly transport: "connect" | "grpc-web";
  readonly header: "valid" | "none" | "garbage";
  readonly subject?: string;
  readonly code?: string;
  readonly challenge?: string | null;
}

export interface InteropResults {
  readonly userAgent: string;
  readonly outcomes: readonly InteropOutcome[];
  readonly error?: string;
}

const withHeader =
  (value: string | undefined): Interceptor =>
  (next) =>
  (req) => {
    if (value !== undefined) req.header.set("authorization", value);
    return next(req);
  };

async function outcomeOf(transport: Transport): Promise<Pick<InteropOutcome, "subject" | "code" | "challenge">> {
  try {
    const res = await createClient(EchoService, transport).say({ text: "from the browser" });
    return { subject: res.subject };
  } catch (error) {
    const e = ConnectError.from(error);
    return { code: Code[e.code], challenge: e.metadata.get("www-authenticate") };
  }
}

async function main(): Promise<InteropResults> {
  const config = (await (await fetch("/config")).json()) as InteropPageConfig;
  const headers = { valid: `Bearer ${config.token}`, none: undefined, garbage: "Bearer not-a-token" } as const;
  const outcomes: InteropOutcome[] = [];
  for (const [transport, make] of [
    ["connect", createConnectTransport],
    ["grpc-web", createGrpcWebTransport],
  ] as const) {
    for (const header of ["valid", "none", "garbage"] as const) {
      const interceptors = [withHeader(headers[header])];
      outcomes.push({ transport, header, ...(await outcomeOf(make({ baseUrl: config.api, interceptors }))) });
    }
  }
  return { userAgent: navigator.userAgent, outcomes };
}

const results = await main().catch((error: unknown) => ({ userAgent: navigator.userAgent, outcomes: [], error: String(error) }));
await fetch("/results", { method: "POST", body: JSON.stringify(results) });

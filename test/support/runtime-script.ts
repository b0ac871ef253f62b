/**
 * What test/system/runtimes.test.ts runs under Deno and Bun (and Node, as the baseline), bundled
 * by esbuild with `connect-oidc` left as an import of the BUILT entry (tsc's ESM output)
 * and the Connect packages left to node_modules: a token manager (memory store) with the
 * test IdP's login, the auth interceptor on connect-web's fetch transport, a real call to
 * the test server, a proactive refresh through openid-client, and a second call.
 *
 * Setup comes in environment variables (RUNTIME_ISSUER, RUNTIME_CLIENT_ID, RUNTIME_API,
 * RUNTIME_LOGIN: the token response as JSON); one line of JSON goes to stdout.
 * RUNTIME_DPOP_JWK (optional): the login is DPoP-bound to this ES256 key pair
 * (`{ publicJwk, privateJwk }`): the manager runs with `dpop: true` and the key as the login's.
 */
import process from "node:process";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { createAuthInterceptor, createTokenManager, memoryStore, type TokenEvent } from "connect-oidc";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { importLoginKey } from "./dpop-login.js";

export interface RuntimeReport {
  readonly runtime: string;
  readonly calls: readonly { readonly subject: string; readonly token: string }[];
  readonly events: readonly string[];
  readonly error?: string;
}

declare const Deno: { version: { deno: string } } | undefined;
declare const Bun: { version: string } | undefined;

const runtime =
  typeof Deno !== "undefined" ? `deno ${Deno.version.deno}` : typeof Bun !== "undefined" ? `bun ${Bun.version}` : `node ${process.version}`;

async function fingerprint(token: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token)));
  return `sha256:${[...digest]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("")
    .slice(0, 16)}`;
}

async function main(): Promise<RuntimeReport> {
  const env = (name: string) => process.env[name] ?? "";
  const events: string[] = [];
  let refreshed: () => void = () => {};
  const proactive = new Promise<void>((resolve) => {
    refreshed = resolve;
  });
  const dpopJwk = env("RUNTIME_DPOP_JWK");
  const tokens = createTokenManager({
    ...(dpopJwk !== "" ? { dpop: true as const } : {}),
    issuer: env("RUNTIME_ISSUER"),
    clientId: env("RUNTIME_CLIENT_ID"),
    allowInsecureRequests: true, // the test IdP is plain http on loopback
    store: memoryStore(),
    onEvent: (event: TokenEvent) => {
      events.push("reason" in event ? `${event.type}:${event.reason}` : event.type);
      if (event.type === "refreshed" && event.reason === "proactive") refreshed();
    },
  });
  const client = createClient(
    EchoService,
    createConnectTransport({ baseUrl: env("RUNTIME_API"), interceptors: [createAuthInterceptor(tokens)] }),
  );
  const calls: { subject: string; token: string }[] = [];
  const call = async () => {
    const token = await fingerprint(await tokens.getAccessToken());
    const res = await client.say({ text: runtime });
    calls.push({ subject: res.subject, token });
  };
  try {
    const login = JSON.parse(env("RUNTIME_LOGIN"));
    await tokens.setTokens(dpopJwk === "" ? login : { ...login, dpopKey: await importLoginKey(JSON.parse(dpopJwk)) });
    await call();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      proactive,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("no proactive refresh within 10 s")), 10_000);
      }),
    ]).finally(() => clearTimeout(timer));
    await call();
    return { runtime, calls, events };
  } catch (error) {
    return { runtime, calls, events, error: String(error) };
  } finally {
    tokens.close();
  }
}

console.log(JSON.stringify(await main()));

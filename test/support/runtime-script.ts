/**
 * What test/system/runtimes.test.ts runs under Deno and Bun (and Node, as the baseline), bundled
 * by esbuild with `connect-oidc` left as an import of the BUILT entry (tsc's ESM output)
 * and the Connect packages left to node_modules: a token manager (memory store) with the
 * test IdP's login, the auth interceptor on connect-web's fetch transport, a real call to
 * the test server, a proactive refresh through openid-client, and a second call.
 *
 * Setup comes in environment variables (RUNTIME_ISSUER, RUNTIME_CLIENT_ID, RUNTIME_API) and,
 * once the runtime has started (it prints `{"ready":true}`), the login as one line of JSON on
 * stdin: `{ login, dpopJwk? }`, the token response and, for a DPoP-bound login, its ES256 key
 * pair (`{ publicJwk, privateJwk }`: the manager runs with `dpop: true` and the key as the
 * login's). A login made before the start would lose to it what the runtime took to start
 * (a second and more under load, of a 2 s token whose JWT `exp` the server checks). The
 * report is one line of JSON on stdout.
 */
import process from "node:process";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { createAuthInterceptor, createTokenManager, memoryStore, type TokenEndpointResponse, type TokenEvent } from "connect-oidc";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { importLoginKey, type LoginKeyJwk } from "./dpop-login.js";

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

/** Says it is ready, then reads the login: one line of JSON on stdin. */
async function loginFromStdin(): Promise<{ login: TokenEndpointResponse; dpopJwk?: LoginKeyJwk }> {
  console.log(JSON.stringify({ ready: true }));
  let text = "";
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (text.includes("\n")) break;
  }
  return JSON.parse(text) as { login: TokenEndpointResponse; dpopJwk?: LoginKeyJwk };
}

async function main(): Promise<RuntimeReport> {
  const env = (name: string) => process.env[name] ?? "";
  const events: string[] = [];
  let refreshed: () => void = () => {};
  const proactive = new Promise<void>((resolve) => {
    refreshed = resolve;
  });
  const { login, dpopJwk } = await loginFromStdin();
  const tokens = createTokenManager({
    ...(dpopJwk !== undefined ? { dpop: true as const } : {}),
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
    await tokens.setTokens(dpopJwk === undefined ? login : { ...login, dpopKey: await importLoginKey(dpopJwk) });
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

/**
 * The page test/system/browser.test.ts runs in headless Chromium (bundled with esbuild for the
 * browser): connect-web's transport with connect-oidc's interceptor and token manager
 * (memory store) against the test server (through a CORS proxy) and the test IdP (its own
 * CORS). It asks the test for its setup (GET /config), for server-side actions
 * (POST /revoke, POST /end-login), and posts what it saw to POST /results.
 *
 * Tokens never leave the page except to /revoke (the test server revokes by token); the
 * results carry fingerprints computed like the test server's `hashToken`.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager, memoryStore } from "../../src/index.js";
import type { TokenEndpointResponse, TokenEvent } from "../../src/types.js";
import { importLoginKey, type LoginKeyJwk } from "./dpop-login.js";

export interface PageConfig {
  readonly issuer: string;
  readonly clientId: string;
  /** The test server, through the CORS proxy. */
  readonly api: string;
  /** A login done by the test (the page does not drive the IdP's login pages). */
  readonly login: TokenEndpointResponse;
  /** DPoP: the login is bound to this ES256 key pair (JWKs); the manager runs with `dpop: true`. */
  readonly dpopJwk?: LoginKeyJwk;
}

export interface PageStep {
  readonly name: "injection" | "proactive" | "reactive" | "failure";
  readonly ok: boolean;
  /** Fingerprint (`sha256:<16 hex>`) of the token the manager handed out before the call. */
  readonly tokenBefore?: string;
  /** Fingerprint of the token it hands out after the call. */
  readonly tokenAfter?: string;
  readonly subject?: string;
  /** For a failed call: the ConnectError's code name, message and its cause's code. */
  readonly code?: string;
  readonly message?: string;
  readonly causeCode?: string;
  /** Token events seen during this step, as `type` or `type:reason`. */
  readonly events: readonly string[];
  readonly ms: number;
}

export interface PageResults {
  readonly userAgent: string;
  readonly steps: readonly PageStep[];
  /** Set when the page itself failed (a step threw unexpectedly). */
  readonly error?: string;
}

async function fingerprint(token: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token)));
  const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `sha256:${hex.slice(0, 16)}`;
}

async function post(path: string, body: unknown): Promise<void> {
  const res = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`POST ${path}: HTTP ${res.status}`);
}

const describeEvent = (e: TokenEvent) => ("reason" in e ? `${e.type}:${e.reason}` : e.type);

async function main(): Promise<PageResults> {
  const config = (await (await fetch("/config")).json()) as PageConfig;
  let events: string[] = [];
  const waiters: Array<{ match: (e: string) => boolean; resolve: () => void }> = [];
  const tokens = createTokenManager({
    ...(config.dpopJwk !== undefined ? { dpop: true as const } : {}),
    issuer: config.issuer,
    clientId: config.clientId,
    allowInsecureRequests: true, // the test IdP is plain http on loopback
    store: memoryStore(),
    onEvent: (event) => {
      const text = describeEvent(event);
      events.push(text);
      for (const waiter of waiters.splice(0)) {
        if (waiter.match(text)) waiter.resolve();
        else waiters.push(waiter);
      }
    },
  });
  const nextEvent = (match: (e: string) => boolean, timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching token event within ${timeoutMs} ms (saw ${events.join(", ")})`)),
        timeoutMs,
      );
      waiters.push({
        match,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  const client = createClient(EchoService, createConnectTransport({ baseUrl: config.api, interceptors: [createAuthInterceptor(tokens)] }));
  await tokens.setTokens(config.dpopJwk === undefined ? config.login : { ...config.login, dpopKey: await importLoginKey(config.dpopJwk) });

  const steps: PageStep[] = [];
  /** One call, with the tokens handed out before and after it and the events in between. */
  const step = async (name: PageStep["name"], before?: () => Promise<void>): Promise<PageStep> => {
    const started = performance.now();
    events = [];
    if (before) await before();
    const tokenBefore = await fingerprint(await tokens.getAccessToken());
    let result: PageStep;
    try {
      const res = await client.say({ text: name });
      const tokenAfter = await fingerprint(await tokens.getAccessToken());
      result = { name, ok: true, tokenBefore, tokenAfter, subject: res.subject, events, ms: 0 };
    } catch (error) {
      const e = ConnectError.from(error);
      const causeCode = (e.cause as { code?: string } | undefined)?.code;
      result = { name, ok: false, tokenBefore, code: Code[e.code], message: e.rawMessage, causeCode, events, ms: 0 };
    }
    result = { ...result, ms: Math.round(performance.now() - started) };
    steps.push(result);
    return result;
  };

  // 1. The interceptor puts the token on a cross-origin call.
  await step("injection");
  // 2. A proactive refresh in the background (short tokens), then a call with the new token.
  await step("proactive", () => nextEvent((e) => e === "refreshed:proactive", 10_000));
  // 3. Right after a refresh (so no proactive one comes between), the server revokes the
  //    current token: the call is refused, the interceptor gets a new token and re-sends it.
  await step("reactive", async () => {
    await nextEvent((e) => e.startsWith("refreshed:"), 10_000);
    events = [];
    await post("/revoke", { token: await tokens.getAccessToken() });
  });
  // 4. The login ends at the IdP and the server refuses the current token: the forced
  //    refresh fails (invalid_grant) and the call ends Unauthenticated.
  await step("failure", async () => {
    await nextEvent((e) => e.startsWith("refreshed:"), 10_000);
    events = [];
    await post("/end-login", {});
    await post("/revoke", { token: await tokens.getAccessToken() });
  });
  tokens.close();
  return { userAgent: navigator.userAgent, steps };
}

main().then(
  (results) => post("/results", results),
  (error: unknown) => post("/results", { userAgent: navigator.userAgent, steps: [], error: String(error) }),
);

/**
 * A process that lives for one call, as the cold-start bench and test run it: a token
 * manager on a stored login, the auth interceptor, one unary call, exit. Run from the
 * plain-JavaScript copy (cold-build.ts) with `node <copy>/test/support/cold-client.js '<ColdChildConfig JSON>'`.
 * Prints one line of JSON (ColdChildReport).
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, createTokenManager } from "../../src/index.js";
import { fileStore, keyringStore } from "../../src/node.js";
import { cpuMs } from "./cold-cpu.js";

export interface ColdChildConfig {
  readonly baseUrl: string;
  readonly issuer: string;
  readonly clientId: string;
  readonly store:
    | { readonly kind: "file"; readonly path: string }
    | { readonly kind: "keyring"; readonly service: string; readonly account: string };
  /** Report the packages in the CommonJS module cache and the requests sent to the issuer (the test; the bench leaves it off). */
  readonly report?: boolean;
  /** The manager with `dpop: true` (the stored login is DPoP-bound). */
  readonly dpop?: boolean;
}

export interface ColdChildReport {
  readonly ok: boolean;
  readonly reply?: string;
  readonly error?: string;
  /** Packages (under node_modules) in the CommonJS module cache when the call was done. */
  readonly packages?: readonly string[];
  /** `METHOD path` of every fetch to the issuer's origin. */
  readonly idpRequests?: readonly string[];
  /** CPU time (user + system) the process used up to its answer, ms: a figure that another load on the machine moves less than wall time. */
  readonly cpuMs?: number;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? "") as ColdChildConfig;
  const idpRequests: string[] = [];
  if (config.report) watchFetch(new URL(config.issuer).origin, idpRequests);
  const store =
    config.store.kind === "file"
      ? fileStore(config.store.path)
      : keyringStore({ service: config.store.service, account: config.store.account });
  const tokens = createTokenManager({
    issuer: config.issuer,
    clientId: config.clientId,
    allowInsecureRequests: true,
    store,
    ...(config.dpop ? { dpop: true as const } : {}),
  });
  try {
    const client = createClient(
      EchoService,
      createConnectTransport({ baseUrl: config.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(tokens)] }),
    );
    const { text } = await client.say({ text: "cold" });
    const report: ColdChildReport = config.report
      ? { ok: true, reply: text, packages: await loadedPackages(), idpRequests, cpuMs: cpuMs() }
      : { ok: true, reply: text, cpuMs: cpuMs() };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    tokens.close();
  }
}

function watchFetch(origin: string, seen: string[]): void {
  const original = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.origin === origin) seen.push(`${init?.method ?? (input instanceof Request ? input.method : "GET")} ${url.pathname}`);
    return original(input, init);
  };
}

/** Package names of the files in the CommonJS module cache (ESM loads: moduleLogArgs in cold-build.ts). */
async function loadedPackages(): Promise<string[]> {
  // Loaded here, after the call: the bench's processes (no report) do exactly what the fixed-header one does.
  const [{ createRequire }, { packagesIn }] = await Promise.all([import("node:module"), import("./cold-packages.js")]);
  return packagesIn(Object.keys(createRequire(process.argv[1] ?? __filename).cache));
}

main().catch((error: unknown) => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(error) } satisfies ColdChildReport)}\n`);
  process.exitCode = 1;
});

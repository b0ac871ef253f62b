/**
 * The baseline of the cold-start bench: the same one call as cold-client.ts, with the
 * token read from the same store by hand and set as a fixed header. No connect-oidc.
 * Run from the plain-JavaScript copy (cold-build.ts) like cold-client.js.
 */
import { readFile } from "node:fs/promises";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import type { ColdChildConfig } from "./cold-client.js";
import { cpuMs } from "./cold-cpu.js";

async function readToken(store: ColdChildConfig["store"]): Promise<string> {
  if (store.kind === "file") return (JSON.parse(await readFile(store.path, "utf8")) as { accessToken: string }).accessToken;
  const { AsyncEntry } = await import("@napi-rs/keyring");
  const secret = await new AsyncEntry(store.service, store.account).getSecret();
  if (secret == null) throw new Error("nothing stored in the keyring");
  return (JSON.parse(new TextDecoder().decode(Uint8Array.from(secret))) as { accessToken: string }).accessToken;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? "") as ColdChildConfig;
  const token = await readToken(config.store);
  const fixedHeader: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const client = createClient(
    EchoService,
    createConnectTransport({ baseUrl: config.baseUrl, httpVersion: "1.1", interceptors: [fixedHeader] }),
  );
  const { text } = await client.say({ text: "cold" });
  process.stdout.write(`${JSON.stringify({ ok: true, reply: text, cpuMs: cpuMs() })}\n`);
}

main().catch((error: unknown) => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(error) })}\n`);
  process.exitCode = 1;
});

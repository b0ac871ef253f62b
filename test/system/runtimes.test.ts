/**
 * The `connect-oidc` entry under Deno and Bun, as README claims: the BUILT entry (the ESM
 * output of tsc -p tsconfig.build.json, as `npm run build` makes dist/esm, here into a
 * private folder) imported by a script (support/runtime-script.ts) that runs a token
 * manager and the auth interceptor on connect-web's fetch transport against the real test
 * server, with a login from the test IdP: a call, a proactive refresh (2 s tokens) through
 * openid-client, and a second call with the new token. Deno and Bun come from the `deno`
 * and `bun` npm packages (devDependencies), Node runs the same script as the baseline.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { build } from "esbuild";
import { boundLogin } from "../support/dpop-bound-login.js";
import { type Idp, startIdp, TEST_ACCOUNT } from "../support/idp.js";
import type { RuntimeReport } from "../support/runtime-script.js";
import { startServer, type TestServer } from "../support/server.js";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "../..");
// Inside the repository, so the built entry's bare imports (openid-client, @connectrpc/connect)
// resolve from its node_modules, as they would from an installed package.
const folder = join(root, ".tmp", `runtimes-${process.pid}`);
const bin = (name: string) => join(root, "node_modules", ".bin", name);

const runtimes: Record<string, { command: string; args: string[] }> = {
  node: { command: process.execPath, args: [] },
  // Deno reads node_modules through the repository's package.json (found from the cwd);
  // permissions as narrow as the script needs.
  deno: { command: bin("deno"), args: ["run", "--no-lock", "--allow-net=127.0.0.1", "--allow-env", "--allow-read"] },
  bun: { command: bin("bun"), args: ["run"] },
};

describe("the built connect-oidc entry under Deno and Bun", () => {
  let idp: Idp;
  let server: TestServer;
  // DPoP (issue 12): an IdP and a server that demand nonces; proofs signed with WebCrypto.
  let dpopIdp: Idp;
  let dpopServer: TestServer;
  let script: string;

  before(async () => {
    await mkdir(folder, { recursive: true });
    await run(process.execPath, [bin("tsc"), "-p", "tsconfig.build.json", "--outDir", join(folder, "esm")], { cwd: root });
    const entry = join(folder, "esm", "index.js");
    // The script bundled with its generated stub; connect-oidc is the built entry, and the
    // Connect packages stay imports, so there is one copy of each (connect-oidc's own).
    script = join(folder, "script.mjs");
    await build({
      entryPoints: [join(root, "test/support/runtime-script.ts")],
      bundle: true,
      format: "esm",
      platform: "neutral",
      outfile: script,
      logLevel: "silent",
      external: ["@connectrpc/*", "@bufbuild/*", "node:*"],
      plugins: [
        {
          name: "built-entry",
          setup(b) {
            b.onResolve({ filter: /^connect-oidc$/ }, () => ({ path: `./${relative(folder, entry)}`, external: true }));
          },
        },
      ],
    });
    await writeFile(join(folder, "package.json"), JSON.stringify({ type: "module" }));
    idp = await startIdp({ accessTokenTtl: 2 });
    server = await startServer({ idp, http2: false });
    dpopIdp = await startIdp({ accessTokenTtl: 2, dpop: { requireNonce: true } });
    dpopServer = await startServer({ idp: dpopIdp, http2: false, dpop: { requireNonce: true } });
  });

  after(async () => {
    await server?.close();
    await idp?.close();
    await dpopServer?.close();
    await dpopIdp?.close();
    await rm(folder, { recursive: true, force: true });
  });

  for (const [name, { command, args }] of Object.entries(runtimes)) {
    for (const dpop of [false, true]) {
      test(`${name}${dpop ? " with DPoP" : ""}: manager + interceptor, a call, a proactive refresh, a call with the new token`, async (t) => {
        const theIdp = dpop ? dpopIdp : idp;
        const theServer = dpop ? dpopServer : server;
        const started = performance.now();
        // The login is made once the runtime has started, and sent on stdin (see runtime-script.ts).
        const stdout = await runWithLogin(command, [...args, script], () => loginFor(theIdp, dpop), {
          ...process.env,
          RUNTIME_ISSUER: theIdp.issuer,
          RUNTIME_CLIENT_ID: theIdp.clientId,
          RUNTIME_API: theServer.baseUrl,
          DENO_NO_UPDATE_CHECK: "1",
          DENO_NO_PROMPT: "1",
        });
        const report = JSON.parse(stdout.trim().split("\n").at(-1)!) as RuntimeReport;
        assert.equal(report.error, undefined, `${report.runtime}: ${report.error}`);
        assert.match(report.runtime, new RegExp(`^${name} `));
        assert.deepEqual(
          report.calls.map((c) => c.subject),
          [TEST_ACCOUNT, TEST_ACCOUNT],
          "both calls accepted as the test user",
        );
        const [first, second] = report.calls.map((c) => c.token);
        assert.notEqual(first, second, "the second call carries the refreshed token");
        assert.ok(report.events.includes("refreshed:proactive"), report.events.join(", "));
        for (const token of [first, second]) {
          const seen = theServer.stats.requests.filter((r) => r.tokenHash === token);
          // With DPoP the first call meets the server's nonce demand once and is re-sent with it.
          assert.deepEqual(
            seen.map((r) => r.auth),
            dpop && token === first ? ["rejected", "accepted"] : ["accepted"],
            `the server saw ${token}: ${seen.map((r) => r.dpop?.reason ?? r.auth).join(", ")}`,
          );
          if (dpop) assert.equal(seen.at(-1)?.dpop?.ok, true);
        }
        t.diagnostic(`${report.runtime}${dpop ? " with DPoP" : ""}: ${Math.round(performance.now() - started)} ms`);
      });
    }
  }
});

/** A login of the test client; with DPoP bound to a new ES256 key, handed over as JWKs. */
async function loginFor(idp: Idp, dpop: boolean): Promise<{ login: object; dpopJwk?: object }> {
  if (!dpop) return { login: await idp.login() };
  const { login, dpopJwk } = await boundLogin(idp);
  return { login, dpopJwk };
}

/**
 * Runs `command` until it exits (at most 60 s); when it prints its first line (`{"ready":true}`),
 * makes the login and writes it to its stdin as one line of JSON. Its stdout, after that line.
 */
function runWithLogin(command: string, args: readonly string[], login: () => Promise<object>, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, env, stdio: ["pipe", "pipe", "pipe"], timeout: 60_000 });
    let stdout = "";
    let stderr = "";
    let sent = false;
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (sent || !stdout.includes("\n")) return;
      sent = true;
      stdout = stdout.slice(stdout.indexOf("\n") + 1);
      login().then(
        (value) => child.stdin.end(`${JSON.stringify(value)}\n`),
        (error: unknown) => {
          child.kill();
          reject(error);
        },
      );
    });
    child.once("error", reject);
    child.once("close", (code, signal) =>
      code === 0 ? resolve(stdout) : reject(new Error(`${command} exited (${code ?? signal}): ${stderr}${stdout}`)),
    );
  });
}

/**
 * The packed package, as a user gets it: `npm pack`, install the tarball into a
 * fresh project, import the entry points from ESM and from CommonJS (connect-oidc/server and,
 * with its optional peer installed, connect-oidc/otel too).
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, it } from "node:test";
import { npmPack } from "../support/npm-pack.js";

const root = resolve(import.meta.dirname, "../..");
const npm = (args: string[], cwd: string) =>
  execFileSync("npm", args, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, npm_config_loglevel: "error" },
  });

describe("npm pack", () => {
  const dir = mkdtempSync(join(tmpdir(), "connect-oidc-pack-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("installs into a fresh project and imports from both entry points, ESM and CJS", async () => {
    const packed = await npmPack(dir);
    const tarball = join(dir, packed.filename);
    const files = packed.files.map((f) => f.path);
    assert.ok(files.includes("dist/esm/index.js") && files.includes("dist/cjs/node.js"));
    assert.ok(!files.some((f) => f.startsWith("test/") || f.startsWith("src/")), "only the build is shipped");
    // One bundle per entry point and shared chunks (a fresh process loads a few files, not one per module).
    const js = files.filter((f) => f.startsWith("dist/esm/") && f.endsWith(".js"));
    const chunks = js.filter((f) => f.startsWith("dist/esm/chunks/"));
    const entries = ["index", "node", "redis", "server", "otel", "testing"].map((e) => `dist/esm/${e}.js`);
    assert.deepEqual(js.filter((f) => !chunks.includes(f)).sort(), entries.sort(), `one file per entry point: ${js.join(", ")}`);
    assert.ok(chunks.length <= 7 && !js.includes("dist/esm/token/manager.js"), `bundled: ${js.join(", ")}`);

    // Types resolve for ESM and CJS consumers (node16 / bundler resolution): arethetypeswrong.
    execFileSync(join(root, "node_modules/.bin/attw"), ["--profile", "node16", "--format", "ascii", tarball], { encoding: "utf8" });

    const app = join(dir, "app");
    execFileSync("mkdir", ["-p", app]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
    // Peers come from the registry (or npm's cache) like for any user.
    npm(["install", "--no-audit", "--no-fund", "--prefer-offline", tarball, "@connectrpc/connect@^2", "@bufbuild/protobuf@^2"], app);

    writeFileSync(
      join(app, "esm.mjs"),
      `import { createAuthInterceptor, createTokenManager, memoryStore, ReauthRequiredError, TokenStoreError } from "connect-oidc";
       import { keyringStore, fileStore } from "connect-oidc/node";
       const m = createTokenManager({ issuer: "https://issuer.example", clientId: "c", store: memoryStore() });
       const i = createAuthInterceptor(m);
       // One class across entry points: an error from connect-oidc/node is the one connect-oidc exports.
       const same = await fileStore("corrupt.json").load().catch((e) => e instanceof TokenStoreError && e.reason);
       // The server entry loads jose (ESM-only) on first use, from ESM and CommonJS alike.
       const { createTokenVerifier, withAuthentication } = await import("connect-oidc/server");
       const v = createTokenVerifier({ issuer: "https://issuer.example", audience: "api", jwksUri: "http://127.0.0.1:9/jwks", allowInsecureRequests: true });
       const refused = await v.verify({ authorization: "Bearer a.b.c", method: "POST", url: "https://api.example/x" });
       console.log([typeof i, typeof keyringStore, typeof fileStore, new ReauthRequiredError("x").code, same, typeof withAuthentication, refused.reason].join(","));
       m.close();`,
    );
    writeFileSync(
      join(app, "cjs.cjs"),
      `const { createAuthInterceptor, createTokenManager, ReauthRequiredError, TokenStoreError } = require("connect-oidc");
       const { keyringStore, fileStore } = require("connect-oidc/node");
       const { createTokenVerifier, withAuthentication } = require("connect-oidc/server");
       const m = createTokenManager({ issuer: "https://issuer.example", clientId: "c" });
       const v = createTokenVerifier({ issuer: "https://issuer.example", audience: "api", jwksUri: "http://127.0.0.1:9/jwks", allowInsecureRequests: true });
       Promise.all([
         fileStore("corrupt.json").load().catch((e) => e instanceof TokenStoreError && e.reason),
         v.verify({ authorization: "Bearer a.b.c", method: "POST", url: "https://api.example/x" }),
       ]).then(([same, refused]) => {
         console.log([typeof createAuthInterceptor(m), typeof keyringStore, typeof fileStore, new ReauthRequiredError("x").code, same, typeof withAuthentication, refused.reason].join(","));
         m.close();
       });`,
    );
    writeFileSync(join(app, "corrupt.json"), "not a login", { mode: 0o600 }); // private: fileStore refuses others
    const expected = "function,function,function,ERR_REAUTH_REQUIRED,corrupt,function,invalid";
    assert.equal(execFileSync(process.execPath, ["esm.mjs"], { cwd: app, encoding: "utf8" }).trim(), expected);
    assert.equal(execFileSync(process.execPath, ["cjs.cjs"], { cwd: app, encoding: "utf8" }).trim(), expected);

    // connect-oidc/otel: @opentelemetry/api is an optional peer. Not installed with the package (the runs
    // above went without it); once the user installs it, the entry loads from ESM and CommonJS alike.
    assert.ok(!existsSync(join(app, "node_modules/@opentelemetry/api")), "an optional peer is not installed with the package");
    npm(["install", "--no-audit", "--no-fund", "--prefer-offline", "@opentelemetry/api@^1.7"], app);
    const otel = (load: string) => `${load}
       const telemetry = createTokenTelemetry();
       telemetry.onEvent({ type: "refreshed", reason: "proactive", expiresAt: Date.now() + 60000, refresh: { reason: "proactive", grant: "refresh_token", durationMs: 12 } });
       telemetry.onEvent({ type: "retried", cause: "token-refused" });
       telemetry.close();
       console.log(typeof createTokenTelemetry);`;
    writeFileSync(join(app, "otel.mjs"), otel(`import { createTokenTelemetry } from "connect-oidc/otel";`));
    writeFileSync(join(app, "otel.cjs"), otel(`const { createTokenTelemetry } = require("connect-oidc/otel");`));
    for (const file of ["otel.mjs", "otel.cjs"]) {
      assert.equal(execFileSync(process.execPath, [file], { cwd: app, encoding: "utf8" }).trim(), "function", file);
    }

    // The published types: codes and store reasons narrow in a switch; the test-only adapter hook is not there.
    writeFileSync(
      join(app, "types.mts"),
      `import { ConnectOidcError, createTokenManager, TokenStoreError, type TokenStoreErrorReason } from "connect-oidc";
       export function code(e: ConnectOidcError): number {
         switch (e.code) {
           case "ERR_CONNECT_OIDC": case "ERR_REAUTH_REQUIRED": case "ERR_TOKEN_REFRESH": case "ERR_TOKEN_STORE":
           case "ERR_LOGIN": case "ERR_CONFIGURATION": case "ERR_PROVIDER_CONFIGURATION": case "ERR_CLIENT_ASSERTION":
           case "ERR_MANAGER_CLOSED": case "ERR_REVOCATION": case "ERR_STEP_UP_REQUIRED": case "ERR_INSUFFICIENT_SCOPE": return 1;
           default: { const never: never = e.code; return never; }
         }
       }
       export function reason(e: TokenStoreError): TokenStoreErrorReason {
         // @ts-expect-error not a reason
         const wrong: TokenStoreErrorReason = "no-such-reason";
         return e.reason ?? wrong;
       }
       // @ts-expect-error the test-only adapter hook is not published
       createTokenManager({ issuer: "https://issuer.example", clientId: "c", oidc: {} });
       import * as all from "connect-oidc";
       // @ts-expect-error internal
       all.createTokenManagerWith;`,
    );
    const tsc = spawnSync(
      process.execPath,
      [
        join(root, "node_modules/typescript/bin/tsc"),
        "--noEmit",
        "--strict",
        "--skipLibCheck",
        "--module",
        "nodenext",
        "--moduleResolution",
        "nodenext",
        "--typeRoots",
        join(root, "node_modules/@types"),
        "--types",
        "node",
        "types.mts",
      ],
      { cwd: app, encoding: "utf8" },
    );
    assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
  });
});

describe("npm pack: connect-oidc/testing", () => {
  const dir = mkdtempSync(join(tmpdir(), "connect-oidc-pack-testing-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("with its optional peers installed, starts a provider and a server from ESM and CommonJS; the login reaches the server", async () => {
    const packed = await npmPack(dir);
    const files = packed.files.map((f) => f.path);
    assert.ok(files.includes("dist/esm/testing.js") && files.includes("dist/cjs/testing.js") && files.includes("dist/esm/testing.d.ts"));
    const app = join(dir, "app");
    execFileSync("mkdir", ["-p", app]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
    const peers = ["@connectrpc/connect@^2", "@connectrpc/connect-node@2.1.2", "@bufbuild/protobuf@^2", "oidc-provider@^9"];
    npm(["install", "--no-audit", "--no-fund", "--prefer-offline", join(dir, packed.filename), ...peers], app);
    // A provider, a login handed to a token manager, a server that refuses no token (401 + challenge)
    // and lets the token through to routing (404: no such method).
    const body = (load: string) => `${load}
      (async () => {
        const idp = await startTestIdentityProvider();
        const server = await startTestServer({ identityProvider: idp, routes: () => {} });
        const tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
        await tokens.setTokens(await idp.login());
        const call = (headers) => fetch(server.baseUrl + "/x.v1.S/M", { method: "POST", headers: { "content-type": "application/json", ...headers }, body: "{}" });
        const refused = await call({});
        const passed = await call({ authorization: "Bearer " + (await tokens.getAccessToken()) });
        console.log([refused.status, refused.headers.get("www-authenticate"), passed.status].join(","));
        tokens.close();
        await server.close();
        await idp[Symbol.asyncDispose]();
      })();`;
    writeFileSync(
      join(app, "esm.mjs"),
      body(`import { createTokenManager } from "connect-oidc";
       import { startTestIdentityProvider, startTestServer } from "connect-oidc/testing";`),
    );
    writeFileSync(
      join(app, "cjs.cjs"),
      body(`const { createTokenManager } = require("connect-oidc");
       const { startTestIdentityProvider, startTestServer } = require("connect-oidc/testing");`),
    );
    for (const script of ["esm.mjs", "cjs.cjs"]) {
      const child = spawnSync(process.execPath, [script], { cwd: app, encoding: "utf8" });
      assert.equal(child.stdout.trim(), "401,Bearer,404", `${script}: ${child.stderr}`);
      assert.equal(child.stderr, "", `${script} wrote to stderr`);
    }
  });
});

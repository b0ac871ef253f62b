/**
 * The `connect-oidc` entry point promises any runtime with fetch and WebCrypto
 * (browsers, Deno, Bun): it must bundle for the browser with no Node built-ins.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { build } from "esbuild";

it("connect-oidc bundles for the browser without Node built-ins", async () => {
  const result = await build({
    entryPoints: ["src/index.ts"],
    bundle: true,
    platform: "browser",
    format: "esm",
    write: false,
    logLevel: "silent",
    external: ["@connectrpc/connect", "@bufbuild/protobuf"],
    metafile: true,
  });
  const inputs = Object.keys(result.metafile.inputs);
  assert.ok(
    inputs.some((i) => i.includes("openid-client")),
    "openid-client is part of the bundle",
  );
  assert.ok(!inputs.some((i) => i.startsWith("node:") || i.includes("src/node")), inputs.join("\n"));
});

/**
 * Cold start (issue 13): a process that lives for one call. Children run a plain-JavaScript
 * copy of src/ (ESM, and CommonJS as dist/cjs is made) with plain `node`, against a real
 * oidc-provider and a real connect-node server on loopback.
 *  - With a valid stored token, the call loads neither openid-client, nor @napi-rs/keyring
 *    (fileStore), nor proper-lockfile: the module log of the ESM loader and the CommonJS
 *    module cache of the child say so.
 *
 * Reproduce: node --import tsx --test test/cold-start.test.ts
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createTokenManager } from "../src/index.js";
import type { StoredTokens, TokenStore } from "../src/types.js";
import { buildColdCopy, type ColdCopy, moduleLogArgs, runColdChild } from "./support/cold-build.js";
import type { ColdChildConfig } from "./support/cold-client.js";
import { packagesIn } from "./support/cold-packages.js";
import { type Idp, startIdp } from "./support/idp.js";
import { type PrivateKeyring, startPrivateKeyring } from "./support/keyring-session.js";
import { createManualClock } from "./support/manual-clock.js";
import { startServer, type TestServer } from "./support/server.js";

const HOUR = 3600_000;
const HEAVY = ["openid-client", "@napi-rs/keyring", "proper-lockfile"] as const;

let folder: string;
let idp: Idp;
let server: TestServer;
const copies: Partial<Record<"esm" | "cjs", ColdCopy>> = {};

before(async () => {
  folder = await mkdtemp(join(tmpdir(), "connect-oidc-cold-"));
  [copies.esm, copies.cjs, idp] = await Promise.all([buildColdCopy("esm"), buildColdCopy("cjs"), startIdp({ accessTokenTtl: 3600 })]);
  server = await startServer({ idp, http2: false });
});

after(async () => {
  await server?.close();
  await idp?.close();
  await Promise.all([copies.esm?.remove(), copies.cjs?.remove()]);
  await rm(folder, { recursive: true, force: true });
});

/** A login as `setTokens` stores it, its clock moved by `shiftMs` (negative: in the past). */
async function storedLogin(shiftMs = 0): Promise<StoredTokens> {
  let stored: StoredTokens | undefined;
  const capture: TokenStore = {
    load: async () => stored,
    save: async (tokens) => {
      stored = tokens;
    },
    clear: async () => {
      stored = undefined;
    },
  };
  const manager = createTokenManager({
    issuer: idp.issuer,
    clientId: idp.clientId,
    allowInsecureRequests: true,
    store: capture,
    clock: createManualClock(Date.now() + shiftMs),
  });
  await manager.setTokens(await idp.login());
  manager.close();
  return stored!;
}

let files = 0;
function fileConfig(): ColdChildConfig {
  files += 1;
  return {
    baseUrl: server.baseUrl,
    issuer: idp.issuer,
    clientId: idp.clientId,
    store: { kind: "file", path: join(folder, `tokens-${files}.json`) },
    report: true,
  };
}

async function seed(copy: ColdCopy, config: ColdChildConfig, tokens: StoredTokens, env?: NodeJS.ProcessEnv): Promise<void> {
  await runColdChild(copy, "test/support/cold-seed.ts", { store: config.store, tokens }, env === undefined ? {} : { env });
}

/** One call in a fresh process; the packages it loaded (ESM loader log and CommonJS cache). */
async function callInFreshProcess(copy: ColdCopy, config: ColdChildConfig, env?: NodeJS.ProcessEnv) {
  files += 1;
  const log = join(folder, `modules-${files}.log`);
  const { report } = await runColdChild(copy, "test/support/cold-client.ts", config, {
    nodeArgs: moduleLogArgs(log),
    ...(env === undefined ? {} : { env }),
  });
  const esm = (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);
  const loaded = new Set([...packagesIn(esm), ...(report.packages ?? [])]);
  return { report, loaded };
}

for (const format of ["esm", "cjs"] as const) {
  describe(`cold start, ${format === "esm" ? "ESM" : "the CommonJS build"}`, () => {
    test("a fresh process with a valid stored token (fileStore) calls without loading openid-client, @napi-rs/keyring or proper-lockfile", async () => {
      const copy = copies[format]!;
      const config = fileConfig();
      await seed(copy, config, await storedLogin());
      const refreshes = idp.stats.tokenRequests;
      const { report, loaded } = await callInFreshProcess(copy, config);
      assert.equal(report.reply, "cold");
      assert.equal(idp.stats.tokenRequests, refreshes, "no refresh");
      assert.deepEqual(report.idpRequests, [], "no request to the identity provider");
      assert.ok(loaded.has("@connectrpc/connect-node"), `the module log sees the packages loaded: ${[...loaded].join(", ")}`);
      for (const name of HEAVY) assert.ok(!loaded.has(name), `${name} was loaded: ${[...loaded].join(", ")}`);
    });

    test("a fresh process with an expired stored token loads openid-client and proper-lockfile on first use, and refreshes", async () => {
      const copy = copies[format]!;
      const config = fileConfig();
      await seed(copy, config, await storedLogin(-2 * HOUR));
      const { report, loaded } = await callInFreshProcess(copy, config);
      assert.equal(report.reply, "cold");
      assert.ok(loaded.has("openid-client") && loaded.has("proper-lockfile"), `loaded: ${[...loaded].join(", ")}`);
      assert.ok(!loaded.has("@napi-rs/keyring"), "a fileStore never loads the keyring");
    });
  });
}

describe("cold start, keyringStore", () => {
  let keyring: PrivateKeyring | string;
  before(async () => {
    keyring = process.platform === "linux" ? await startPrivateKeyring() : "the keyring tests drive gnome-keyring and run on Linux only";
  });
  after(async () => {
    if (typeof keyring !== "string") await keyring.stop();
  });

  test("a fresh process with a valid stored token loads the keyring, but neither openid-client nor proper-lockfile", async (t) => {
    if (typeof keyring === "string") return t.skip(keyring);
    const copy = copies.esm!;
    const config: ColdChildConfig = { ...fileConfig(), store: { kind: "keyring", service: "connect-oidc-cold-test", account: "valid" } };
    await seed(copy, config, await storedLogin(), keyring.env);
    const { report, loaded } = await callInFreshProcess(copy, config, keyring.env);
    assert.equal(report.reply, "cold");
    assert.ok(loaded.has("@napi-rs/keyring"), `loaded: ${[...loaded].join(", ")}`);
    assert.ok(!loaded.has("openid-client") && !loaded.has("proper-lockfile"), `loaded: ${[...loaded].join(", ")}`);
  });
});

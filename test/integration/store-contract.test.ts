/**
 * One store contract (test/support/store-contract.ts), every store: memoryStore, fileStore,
 * keyringStore on a real gnome-keyring Secret Service (a private D-Bus session) and on the
 * kernel keyring (a worker under `keyctl session -`), and redisStore on a real
 * redis-server. What only one store promises stays in its own file (file-store*.test.ts,
 * keyring-store*.test.ts, redis-store.test.ts). Without gnome-keyring, keyctl or
 * redis-server their part skips, except in CI, where it fails.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { access, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { AsyncEntry, findCredentialsAsync } from "@napi-rs/keyring";
import { Redis } from "ioredis";
import { memoryStore } from "../../src/index.js";
import { fileStore } from "../../src/node/file-store.js";
import { keyringStore, keyringValueLimit } from "../../src/node/keyring-store.js";
import { redisStore } from "../../src/redis.js";
import type { StoredTokens, TokenStore } from "../../src/types.js";
import { keyringForTests } from "../support/keyring-for-tests.js";
import { keyutilsForTests, startKeyutilsWorker, type KeyutilsWorker } from "../support/keyring-keyutils.js";
import type { KeyutilsAnswer, KeyutilsRequest } from "../support/keyring-keyutils-worker.js";
import type { PrivateKeyring } from "../support/keyring-session.js";
import { threeCallers } from "../support/lock-callers.js";
import { type RedisServer, redisServerMissing } from "../support/redis-server.js";
import { startRedisServer } from "../support/redis-server.js";
import { type ContractStore, RemoteStoreError, storeContract } from "../support/store-contract.js";
import { bundledWorker } from "../support/worker-bundle.js";

const run = promisify(execFile);
const childScript = fileURLToPath(new URL("../support/keyring-child.ts", import.meta.url));
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A TokenStore of this process as the contract reaches it. */
const local = (store: TokenStore): ContractStore => ({
  load: () => store.load(),
  save: (tokens) => store.save(tokens),
  clear: () => store.clear(),
  lockOrder: () => threeCallers((fn) => store.lock!(fn)),
});

describe("memoryStore", () => {
  const stores = new Map<string, TokenStore>();
  storeContract({
    open(place) {
      if (!stores.has(place)) stores.set(place, memoryStore());
      return local(stores.get(place)!);
    },
    names: () => /memoryStore/,
    keepsOnlyKnownFields: false,
    lockOrder: "fifo",
  });
});

describe("fileStore", () => {
  let folder: string;
  before(async () => {
    folder = await mkdtemp(join(tmpdir(), "connect-oidc-contract-file-"));
  });
  after(async () => {
    await rm(folder, { recursive: true, force: true });
  });
  // Each place in a folder of its own that does not exist until the first save.
  const path = (place: string) => join(folder, place, "tokens.json");
  storeContract({
    open: (place) => local(fileStore(path(place))),
    elsewhere: (place) => local(fileStore(path(place))),
    names: (place) => new RegExp(literal(path(place))),
    async writeRaw(place, value) {
      await mkdir(dirname(path(place)), { recursive: true, mode: 0o700 });
      await writeFile(path(place), value, { mode: 0o600 }); // private: only the content is wrong
    },
    readRaw: (place) => readFile(path(place), "utf8").catch(() => undefined),
    async nothingLeft(place) {
      await assert.rejects(access(dirname(path(place))), { code: "ENOENT" }, "no folder made by a load");
    },
    keepsOnlyKnownFields: true,
    lockOrder: "fifo",
  });
});

const { keyring: session, skip: noSecretService } = await keyringForTests();

describe("keyringStore on the Secret Service", { skip: noSecretService }, () => {
  const keyring = session as PrivateKeyring;
  const service = `connect-oidc-contract-${process.pid}`;
  const pinned = { linux: { store: "secret-service" as const } };
  const saved: Record<string, string | undefined> = {};
  before(() => {
    // Before the first keyring use in this process: @napi-rs/keyring reads these then.
    for (const name of ["DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"]) saved[name] = process.env[name];
    process.env.DBUS_SESSION_BUS_ADDRESS = keyring.address;
    process.env.XDG_RUNTIME_DIR = keyring.runtimeDir;
  });
  after(async () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await keyring.stop();
  });

  /** One keyringStore operation in another process on the same bus. */
  async function inChild(op: "load" | "save" | "clear", account: string, tokens?: StoredTokens): Promise<unknown> {
    const args = [bundledWorker(childScript), op, service, account, "secret-service", JSON.stringify(tokens ?? {})];
    const { stdout } = await run(process.execPath, args, { env: keyring.env, timeout: 60_000 });
    return settle(JSON.parse(stdout.trim().split("\n").at(-1)!) as KeyutilsAnswer);
  }

  storeContract({
    open: (place) => local(keyringStore({ service, account: place, linuxStore: "secret-service" })),
    elsewhere: (place) => ({
      load: async () => ((await inChild("load", place)) as StoredTokens | null) ?? undefined,
      save: async (tokens) => void (await inChild("save", place, tokens)),
      clear: async () => void (await inChild("clear", place)),
      lockOrder: () => Promise.reject(new Error("not across processes")),
    }),
    names: (place) => new RegExp(literal(`service "${service}", account "${place}"`)),
    async writeRaw(place, value) {
      const entry = new AsyncEntry(service, place, pinned);
      await (typeof value === "string" ? entry.setPassword(value) : entry.setSecret(value));
    },
    readRaw: async (place) => (await new AsyncEntry(service, place, pinned).getPassword()) ?? undefined,
    async nothingLeft(place) {
      const accounts = (await findCredentialsAsync(service)).map((c) => c.account);
      assert.ok(!accounts.some((a) => a.startsWith(place)), accounts.join(", "));
    },
    keepsOnlyKnownFields: true,
    lockOrder: "fifo",
    async afterLock() {
      assert.ok((await stat(join(keyring.runtimeDir, "connect-oidc"))).isDirectory(), "the lock file is in the runtime folder");
    },
    valueLimit: { bytes: keyringValueLimit(), says: /2,560 bytes/ },
  });
});

/** The value of a worker's or child's answer; a failed one rejects as the store's error. */
function settle(answer: KeyutilsAnswer): unknown {
  if (answer.ok) return answer.value;
  throw new RemoteStoreError(answer.name, answer.reason, answer.message, [answer.text ?? "", answer.inspected ?? ""]);
}

const noKeyutils = await keyutilsForTests();

describe("keyringStore on the kernel keyring (keyutils)", { skip: noKeyutils }, () => {
  const service = `connect-oidc-contract-keyutils-${process.pid}`;
  let runtimeDir: string;
  let worker: KeyutilsWorker;
  const accounts = new Set<string>();
  const send = async (request: KeyutilsRequest) => {
    accounts.add(request.account);
    return settle(await worker.send(request));
  };
  before(async () => {
    runtimeDir = await mkdtemp(join(tmpdir(), "connect-oidc-contract-keyutils-"));
    worker = startKeyutilsWorker(service, runtimeDir);
  });
  after(async () => {
    // Kernel keyring entries outlive the session (the persistent keyring): remove ours.
    for (const account of accounts) await send({ op: "clear", account }).catch(() => {});
    await worker.stop();
    await rm(runtimeDir, { recursive: true, force: true });
  });

  storeContract({
    open: (account) => ({
      load: async () => ((await send({ op: "load", account })) as StoredTokens | null) ?? undefined,
      save: async (tokens) => void (await send({ op: "save", account, tokens })),
      clear: async () => void (await send({ op: "clear", account })),
      lockOrder: async () => (await send({ op: "lock-order", account })) as string[],
    }),
    // Another process in the same session keyring.
    elsewhere: (account) => ({
      load: async () =>
        (settle((await send({ op: "child", childOp: "load", account })) as KeyutilsAnswer) as StoredTokens | null) ?? undefined,
      save: async (tokens) => void settle((await send({ op: "child", childOp: "save", account, tokens })) as KeyutilsAnswer),
      clear: async () => void settle((await send({ op: "child", childOp: "clear", account })) as KeyutilsAnswer),
      lockOrder: () => Promise.reject(new Error("not across processes")),
    }),
    names: (account) => new RegExp(literal(`service "${service}", account "${account}"`)),
    async writeRaw(account, value) {
      await send(typeof value === "string" ? { op: "set-text", account, text: value } : { op: "set-bytes", account, bytes: [...value] });
    },
    readRaw: async (account) => ((await send({ op: "get", account })) as string | null) ?? undefined,
    async nothingLeft(account) {
      assert.equal(await send({ op: "get", account: `${account} (connect-oidc probe)` }), null, "the probe left nothing");
    },
    keepsOnlyKnownFields: true,
    lockOrder: "one-at-a-time",
    async afterLock() {
      assert.ok((await stat(join(runtimeDir, "connect-oidc"))).isDirectory(), "the lock file is in the runtime folder");
    },
    valueLimit: { bytes: keyringValueLimit(), says: /16384 bytes/ },
    holdsEmptyValue: false, // @napi-rs/keyring will not write an empty secret there
    remote: true,
  });
});

const noRedis = redisServerMissing();
if (noRedis !== undefined && process.env.CI === "true") {
  test("redis-server is available in CI", () => assert.fail(noRedis));
}

describe("redisStore", { skip: noRedis }, () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  const connect = () => {
    const client = new Redis(server.url);
    client.on("error", () => {});
    clients.push(client);
    return client;
  };
  const key = (place: string) => `contract:{${place}}`;
  before(async () => {
    server = await startRedisServer();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await server?.close();
  });

  storeContract({
    open: (place) => local(redisStore({ client: connect(), key: key(place) })),
    // Another connection.
    elsewhere: (place) => local(redisStore({ client: connect(), key: key(place) })),
    names: (place) => new RegExp(literal(`Redis key "${key(place)}"`)),
    async writeRaw(place, value) {
      await connect().hset(key(place), "version", "1", "value", typeof value === "string" ? value : Buffer.from(value));
    },
    readRaw: async (place) => (await connect().hget(key(place), "value")) ?? undefined,
    async nothingLeft(place) {
      assert.equal(await connect().exists(key(place), `${key(place)}:lease`), 0, "nothing written by a load");
    },
    keepsOnlyKnownFields: true,
    lockOrder: "one-at-a-time",
  });
});

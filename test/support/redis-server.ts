/**
 * A real redis-server on a loopback port for the Redis tests: started, stopped and
 * restarted (on the same port) by the test. Without persistence by default (`--save ''`);
 * `appendOnly` keeps the data across a restart in a private folder.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGKILL: data not on disk is lost) and resolves once it is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** SIGSTOP: it answers nothing (connections stay open, commands wait in their sockets) until `resume()`. */
  pause(): void;
  /** SIGCONT after `pause()`: it runs what waited, in the order it arrived on each connection. */
  resume(): void;
  close(): Promise<void>;
}

/** Why redis-server cannot run here, or undefined when it can. */
export function redisServerMissing(): string | undefined {
  const probe = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  return probe.error === undefined && probe.status === 0
    ? undefined
    : "redis-server is not installed (Debian: apt-get install redis-server; listed in .ci/apt-packages.txt)";
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function startRedisServer(options: { appendOnly?: boolean; cluster?: boolean } = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "connect-oidc-redis-"));
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir, "--protected-mode", "no"];
  if (options.appendOnly === true) args.push("--appendonly", "yes", "--appendfsync", "always");
  if (options.cluster === true) args.push("--cluster-enabled", "yes", "--cluster-config-file", join(dir, "nodes.conf"));
  let child: ChildProcess | undefined;

  const start = () =>
    new Promise<void>((resolve, reject) => {
      const started = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
      child = started;
      let output = "";
      const onData = (chunk: Buffer) => {
        output += chunk.toString("utf8");
        if (output.includes("Ready to accept connections")) {
          started.stdout?.off("data", onData);
          started.stdout?.resume();
          resolve();
        }
      };
      started.stdout?.on("data", onData);
      started.stderr?.resume();
      started.once("error", reject);
      started.once("exit", (code) => reject(new Error(`redis-server exited (${code}) before it was ready: ${output.slice(-500)}`)));
    });

  const stop = async () => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const gone = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGKILL");
    await gone;
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    pause: () => void child?.kill("SIGSTOP"),
    resume: () => void child?.kill("SIGCONT"),
    async close() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A Redis Cluster of `size` primaries (no replicas) on loopback ports, its slots spread by redis-cli. */
export async function startRedisCluster(size = 3): Promise<{ readonly nodes: readonly RedisServer[]; close(): Promise<void> }> {
  const nodes = await Promise.all(Array.from({ length: size }, () => startRedisServer({ cluster: true })));
  const close = async () => {
    await Promise.all(nodes.map((n) => n.close()));
  };
  const create = spawnSync(
    "redis-cli",
    ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "0", "--cluster-yes"],
    { encoding: "utf8", timeout: 30_000 },
  );
  if (create.status !== 0) {
    await close();
    throw new Error(`redis-cli --cluster create failed (${create.status}): ${create.stdout.slice(-500)} ${create.stderr.slice(-500)}`);
  }
  // Every node must agree before clients route by slot.
  for (const node of nodes) {
    for (let tries = 0; ; tries += 1) {
      const info = spawnSync("redis-cli", ["-p", String(node.port), "cluster", "info"], { encoding: "utf8" });
      if (info.stdout.includes("cluster_state:ok")) break;
      if (tries > 100) {
        await close();
        throw new Error(`the cluster did not reach cluster_state:ok on port ${node.port}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return { nodes, close };
}

/**
 * A real HTTP proxy on loopback for tests: Debian's `tinyproxy` (apt, listed in
 * .ci/apt-packages.txt), started in the foreground with a config of its own in a temporary
 * folder, on a free port. The requests it forwarded are read back from its log, as an
 * operator would check a corporate proxy.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Tinyproxy {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Every request the proxy took so far, as `METHOD absolute-URL`, from its log. */
  requests(): string[];
  close(): Promise<void>;
}

/** Wait this long at most for the proxy to accept connections. */
const START_BOUND_MS = 10_000;

export async function startTinyproxy(): Promise<Tinyproxy> {
  const dir = mkdtempSync(join(tmpdir(), "connect-oidc-tinyproxy-"));
  const port = await freePort();
  const log = join(dir, "tinyproxy.log");
  const config = join(dir, "tinyproxy.conf");
  writeFileSync(
    config,
    [
      `Port ${port}`,
      "Listen 127.0.0.1",
      "Timeout 30",
      `LogFile "${log}"`,
      "LogLevel Connect",
      "MaxClients 20",
      "Allow 127.0.0.1",
      "DisableViaHeader Yes",
    ].join("\n"),
  );
  const child = spawn("tinyproxy", ["-d", "-c", config], { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await untilListening(port, child);
  } catch (error) {
    await close();
    throw error;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => requestsIn(log),
    close,
  };
}

/** tinyproxy logs each request as `Request (file descriptor N): GET http://host/path HTTP/1.1`. */
function requestsIn(log: string): string[] {
  const text = readFileSync(log, "utf8");
  return [...text.matchAll(/Request \(file descriptor \d+\): (\S+) (\S+) HTTP\/1\.[01]/g)].map((m) => `${m[1]} ${m[2]}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Connects until the proxy accepts, bounded; fails naming the bound or tinyproxy's exit. */
async function untilListening(port: number, child: ChildProcess): Promise<void> {
  const deadline = performance.now() + START_BOUND_MS;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`tinyproxy exited with ${child.exitCode} before listening (is it installed? apt-get install tinyproxy)`);
    const connected = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (connected) return;
    if (performance.now() > deadline) throw new Error(`tinyproxy did not listen on port ${port} within ${START_BOUND_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

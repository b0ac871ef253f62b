/**
 * A private D-Bus session bus with (optionally) an unlocked gnome-keyring Secret Service,
 * keyrings in a temp folder: keyring tests never touch, lock or litter the user's own
 * keyring, and run the same locally and in CI without a wrapper script.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { mkdirSync } from "node:fs";

const run = promisify(execFile);

export interface PrivateKeyring {
  /** DBUS_SESSION_BUS_ADDRESS of the private bus. */
  readonly address: string;
  /** A private runtime folder (for XDG_RUNTIME_DIR: the keyring store's lock files). */
  readonly runtimeDir: string;
  /** process.env pointed at the private bus, for child processes. */
  readonly env: NodeJS.ProcessEnv;
  /** Locks the login keyring through the Secret Service API (org.freedesktop.Secret.Service.Lock). */
  lock(): Promise<void>;
  /** What gnome-keyring-daemon printed (its last 4 KB) and how it exited, for a failure message. */
  daemonReport(): string;
  stop(): Promise<void>;
}

/** Starts the bus (and gnome-keyring unless `keyring: false`); a string says why it could not. */
export async function startPrivateKeyring(options: { keyring?: boolean } = {}): Promise<PrivateKeyring | string> {
  const folder = await mkdtemp(join(tmpdir(), "connect-oidc-keyring-"));
  const home = join(folder, "home");
  const runtimeDir = join(folder, "runtime");
  for (const dir of [home, runtimeDir, join(folder, "data")]) mkdirSync(dir, { mode: 0o700 });
  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    XDG_DATA_HOME: join(folder, "data"),
    XDG_CONFIG_HOME: join(home, ".config"),
    XDG_CACHE_HOME: join(home, ".cache"),
    XDG_RUNTIME_DIR: runtimeDir,
  };
  // No display: an unlock prompt fails at once instead of waiting for a human.
  for (const name of ["DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"]) delete baseEnv[name];

  const children: ChildProcess[] = [];
  let daemonLog = "";
  let daemonExit = "running";
  // If the test process dies without stop(), the daemons must not outlive it.
  const killAll = () => {
    for (const child of children) child.kill("SIGKILL");
  };
  process.once("exit", killAll);
  const stop = async () => {
    process.off("exit", killAll);
    for (const child of children.reverse()) await terminate(child);
    await rm(folder, { recursive: true, force: true });
  };
  try {
    const bus = spawn(
      "dbus-daemon",
      ["--session", "--nofork", "--nopidfile", `--address=unix:path=${join(folder, "bus")}`, "--print-address=1"],
      { env: baseEnv, stdio: ["ignore", "pipe", "ignore"] },
    );
    children.push(bus);
    const address = (await firstLine(bus, "dbus-daemon")).trim();
    const env: NodeJS.ProcessEnv = { ...baseEnv, DBUS_SESSION_BUS_ADDRESS: address };
    if (options.keyring !== false) {
      const keyring = spawn("gnome-keyring-daemon", ["--foreground", "--unlock", "--components=secrets"], {
        env,
        stdio: ["pipe", "ignore", "pipe"],
      });
      children.push(keyring);
      keyring.stderr?.setEncoding("utf8");
      keyring.stderr?.on("data", (chunk: string) => {
        daemonLog = (daemonLog + chunk).slice(-4096);
      });
      keyring.once("exit", (code, signal) => {
        daemonExit = `exited (code ${code}, signal ${signal})`;
      });
      const started = spawned(keyring, "gnome-keyring-daemon");
      keyring.stdin?.end("pw"); // --unlock reads the login keyring's password from stdin
      await started;
      await waitFor(async () => (await dbus(env, nameHasOwner)).includes("boolean true"), "the Secret Service");
      await waitFor(async () => (await dbus(env, lockedProperty).catch(() => "")).includes("boolean false"), "an unlocked login keyring");
    }
    return {
      address,
      runtimeDir,
      env,
      async lock() {
        await dbus(env, lockLogin);
        if (!(await dbus(env, lockedProperty)).includes("boolean true")) throw new Error("the keyring did not lock");
      },
      daemonReport: () => `gnome-keyring-daemon ${daemonExit}; it printed: ${daemonLog.trim() || "(nothing)"}`,
      stop,
    };
  } catch (error) {
    await stop();
    return error instanceof Error ? error.message : String(error);
  }
}

const nameHasOwner = [
  "--dest=org.freedesktop.DBus",
  "/org/freedesktop/DBus",
  "org.freedesktop.DBus.NameHasOwner",
  "string:org.freedesktop.secrets",
];
const lockedProperty = [
  "--dest=org.freedesktop.secrets",
  "/org/freedesktop/secrets/aliases/default",
  "org.freedesktop.DBus.Properties.Get",
  "string:org.freedesktop.Secret.Collection",
  "string:Locked",
];
const lockLogin = [
  "--dest=org.freedesktop.secrets",
  "/org/freedesktop/secrets",
  "org.freedesktop.Secret.Service.Lock",
  "array:objpath:/org/freedesktop/secrets/collection/login",
];

async function dbus(env: NodeJS.ProcessEnv, args: string[]): Promise<string> {
  const { stdout } = await run("dbus-send", ["--session", "--print-reply", "--type=method_call", ...args], {
    env,
    timeout: 5_000,
  });
  return stdout;
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function spawned(child: ChildProcess, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", (error) => reject(new Error(`cannot start ${name}: ${error.message}`)));
  });
}

async function firstLine(child: ChildProcess, name: string): Promise<string> {
  await spawned(child, name);
  return new Promise((resolve, reject) => {
    let text = "";
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("\n")) resolve(text.slice(0, text.indexOf("\n")));
    });
    child.once("exit", (code) => reject(new Error(`${name} exited (${code}) before printing its address`)));
  });
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 2_000);
  await exited;
  clearTimeout(timer);
}

/**
 * The example CLIs as a user meets them: `--help` prints the usage to stdout and exits 0;
 * a mistake on the command line is one `error: …` line and a hint on stderr, exit 2,
 * never a stack trace. Each case is a child process (`node --import tsx examples/<name>.ts`)
 * that fails or finishes before it opens anything.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type ExampleRun, runExample } from "../support/run-example.js";

const EXAMPLES = ["heartbeat", "events", "client-credentials", "demo", "server", "account"] as const;

type Run = ExampleRun;

// Without these in the environment, "required" means what the arguments say.
const env = { ...process.env };
for (const name of [
  "OIDC_ISSUER",
  "OIDC_CLIENT_ID",
  "OIDC_CLIENT_SECRET",
  "OIDC_AUDIENCE",
  "AGENT_SERVER_URL",
  "HEARTBEAT_INTERVAL",
  "PORT",
]) {
  delete env[name];
}

const run = (example: string, args: readonly string[]) => runExample(example, args, env);

function assertUsageError(r: Run, message: RegExp): void {
  const output = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.equal(r.code, 2, output);
  assert.match(r.stderr, /^error: /, output);
  assert.match(r.stderr, message, output);
  assert.match(r.stderr, /^run with --help for usage$/m, output);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `a stack trace:\n${output}`);
  assert.equal(r.stderr.trimEnd().split("\n").length, 2, output);
  assert.equal(r.stdout, "", output);
}

describe("example CLIs", { concurrency: 4 }, () => {
  for (const example of EXAMPLES) {
    it(`${example} --help: usage on stdout, exit 0`, { timeout: 30_000 }, async () => {
      const r = await run(example, ["--help"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^usage: /);
      assert.match(r.stdout, /^flags:$/m);
      assert.match(r.stdout, /-h, --help/);
      assert.match(r.stdout, /^example:\n {2}\S/m);
      assert.equal(r.stderr, "");
    });

    it(`${example} -h: the same usage`, { timeout: 30_000 }, async () => {
      const r = await run(example, ["-h"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^usage: /);
    });

    it(`${example} --bogus: error on stderr, exit 2, no stack trace`, { timeout: 30_000 }, async () => {
      assertUsageError(await run(example, ["--bogus"]), /^error: unknown flag --bogus$/m);
    });
  }

  const required = ["--issuer", "http://127.0.0.1:9", "--client-id", "x", "--server", "http://127.0.0.1:9"];
  const cases: Array<[string, string[], RegExp]> = [
    ["heartbeat", [], /--issuer is required \(or set OIDC_ISSUER\)/],
    ["heartbeat", ["--issuer"], /--issuer needs a value/],
    ["heartbeat", [...required, "--interval", "soon"], /--interval: not a duration: "soon"/],
    ["heartbeat", [...required, "--login", "sms"], /--login: expected device, browser or none, got "sms"/],
    ["heartbeat", [...required, "--store", "cloud"], /--store: expected/],
    ["events", [...required, "--max-attempts", "many"], /--max-attempts: not a whole number: "many"/],
    ["events", [...required, "a.jsonl", "b.jsonl"], /too many arguments/],
    ["server", ["--issuer", "not a url", "--audience", "api"], /--issuer: not a URL/],
    ["server", ["--issuer", "http://127.0.0.1:9", "--audience", "api", "--port", "99999"], /--port: must be at most 65535/],
    ["client-credentials", ["--issuer", "http://127.0.0.1:9"], /--client-id is required with --issuer/],
    ["client-credentials", ["--count", "0"], /--count: must be at least 1/],
    ["demo", ["--duration", "5x"], /--duration: not a duration: "5x"/],
    ["account", ["--issuer", "http://127.0.0.1:9", "--client-id", "x"], /expected a command, status or logout/],
    ["account", ["whoami", "--issuer", "http://127.0.0.1:9", "--client-id", "x"], /expected a command, status or logout, got "whoami"/],
    ["demo", ["--issuer", "http://127.0.0.1:9", "--client-id", "x"], /give --server <url>, or --audience/],
  ];
  for (const [example, args, message] of cases) {
    it(`${example} ${args.join(" ") || "(no flags)"}: ${message.source}`, { timeout: 30_000 }, async () => {
      assertUsageError(await run(example, args), message);
    });
  }
});

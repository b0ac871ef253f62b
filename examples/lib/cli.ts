/**
 * Command lines for the example CLIs: a small layer over node:util parseArgs.
 *
 * - `--help` / `-h` prints the usage (flags, environment variables, defaults, an example)
 *   to stdout and exits 0.
 * - An unknown flag, a flag without its value, a required value that is missing, or a
 *   value that is not a duration / an integer / a URL / one of the choices throws a
 *   {@link UsageError}; {@link runMain} turns that into `error: …` and
 *   `run with --help for usage` on stderr and exit code 2, never a stack trace.
 *
 * Values come from the flag, else the flag's environment variable, else its default.
 * Typed (`--interval` → string) and checked here, they are converted by the caller.
 */
import { parseArgs } from "node:util";
import { parseDuration } from "./duration.js";

/** A mistake on the command line (or in the environment it reads): exit 2, with a hint to --help. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Throws a {@link UsageError}: for checks the flag specs cannot express. */
export function usageError(message: string): never {
  throw new UsageError(message);
}

interface FlagBase {
  /** One line for the usage. */
  readonly help: string;
  /** A one-letter alias, e.g. "v" for -v. */
  readonly short?: string;
  /** Works, but is left out of the usage (test hooks). */
  readonly hidden?: boolean;
}

export interface BooleanFlag extends FlagBase {
  readonly type: "boolean";
}

export interface StringFlag extends FlagBase {
  readonly type: "string";
  /** Placeholder in the usage; default from `kind`, else "<value>". */
  readonly value?: string;
  /** Environment variable read when the flag is not given. */
  readonly env?: string;
  readonly default?: string;
  /** Missing (no flag, no environment variable, no default) is a usage error. */
  readonly required?: boolean;
  /** duration: "90s", "5m", "1h30m", more than 0; url: http(s)://…; uri: any absolute URI; integer: see min/max. */
  readonly kind?: "duration" | "url" | "uri" | "integer";
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
}

export type FlagSpec = BooleanFlag | StringFlag;

export interface CliSpec<F extends Readonly<Record<string, FlagSpec>>> {
  /** How to run it: "tsx examples/heartbeat.ts". */
  readonly command: string;
  /** What comes after the command in the usage line; default: the required flags, then "[flags]". */
  readonly synopsis?: string;
  /** What it does, a line or two. */
  readonly description: string;
  readonly flags: F;
  /** Positional arguments; none when absent. */
  readonly positionals?: { readonly max: number };
  /** Extra lines after the flags. */
  readonly notes?: readonly string[];
  /** One example command line. */
  readonly example: string;
  /** Default: process.argv.slice(2). */
  readonly args?: readonly string[];
}

export type CliValues<F extends Readonly<Record<string, FlagSpec>>> = {
  -readonly [K in keyof F]: F[K] extends BooleanFlag
    ? boolean
    : F[K] extends { readonly required: true } | { readonly default: string }
      ? string
      : string | undefined;
};

export interface Cli<F extends Readonly<Record<string, FlagSpec>>> {
  readonly values: CliValues<F>;
  readonly positionals: string[];
}

const PLACEHOLDER = { duration: "<duration>", url: "<url>", uri: "<uri>", integer: "<n>" } as const;

const placeholder = (flag: StringFlag) =>
  flag.value ?? (flag.kind ? PLACEHOLDER[flag.kind] : flag.choices ? flag.choices.join("|") : "<value>");

/** The usage text, as --help prints it. */
export function formatUsage<F extends Readonly<Record<string, FlagSpec>>>(spec: CliSpec<F>): string {
  const entries = Object.entries(spec.flags).filter(([, flag]) => !flag.hidden);
  const synopsis =
    spec.synopsis ??
    [
      ...entries.filter(([, f]) => f.type === "string" && f.required).map(([name, f]) => `--${name} ${placeholder(f as StringFlag)}`),
      "[flags]",
    ].join(" ");
  const rows: Array<[string, string]> = entries.map(([name, flag]) => {
    const left = `${flag.short ? `-${flag.short}, ` : "    "}--${name}${flag.type === "string" ? ` ${placeholder(flag)}` : ""}`;
    const extra: string[] = [];
    if (flag.type === "string") {
      if (flag.required) extra.push("required");
      if (flag.env) extra.push(`env ${flag.env}`);
      if (flag.default !== undefined) extra.push(`default ${flag.default === "" ? '""' : flag.default}`);
    }
    if (!extra.length) return [left, flag.help];
    // "… (default: an embedded one)" + env → "… (default: an embedded one; env OIDC_ISSUER)"
    return [left, flag.help.endsWith(")") ? `${flag.help.slice(0, -1)}; ${extra.join("; ")})` : `${flag.help} (${extra.join("; ")})`];
  });
  rows.push(["-h, --help", "print this help and exit"]);
  const width = Math.max(...rows.map(([left]) => left.length));
  const lines = [
    `usage: ${spec.command} ${synopsis}`,
    "",
    ...spec.description.split("\n"),
    "",
    "flags:",
    ...rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`),
  ];
  if (entries.some(([, f]) => f.type === "string" && f.kind === "duration")) {
    lines.push("", "durations: 1500ms, 90s, 5m, 2h, 1h30m; a bare number is seconds");
  }
  if (spec.notes?.length) lines.push("", ...spec.notes);
  lines.push("", "example:", `  ${spec.example}`, "");
  return lines.join("\n");
}

/**
 * Parses the command line against `spec`: prints the usage and exits 0 on --help / -h,
 * throws a {@link UsageError} on anything wrong. Call it first, before opening anything.
 */
export function parseCli<const F extends Readonly<Record<string, FlagSpec>>>(spec: CliSpec<F>): Cli<F> {
  const args = [...(spec.args ?? process.argv.slice(2))];
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, flag] of Object.entries(spec.flags)) {
    options[name] = { type: flag.type, ...(flag.short ? { short: flag.short } : {}) };
  }
  // Not strict: parseArgs' own messages differ between Node versions; the tokens are checked below.
  const { tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });

  // --help wins over any other mistake on the same line.
  if (tokens.some((t) => t.kind === "option" && t.name === "help")) {
    process.stdout.write(formatUsage(spec));
    process.exit(0);
  }

  const given: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === "option-terminator") continue;
    if (token.kind === "positional") {
      positionals.push(token.value);
      continue;
    }
    const flag = Object.hasOwn(spec.flags, token.name) ? spec.flags[token.name] : undefined;
    if (!flag) usageError(`unknown flag ${token.rawName}`);
    if (flag.type === "boolean") {
      if (token.value !== undefined) usageError(`--${token.name} takes no value`);
      given[token.name] = true;
    } else {
      // `--issuer --server x` or `--issuer` last: the value is missing (write --issuer=-x for a value starting with "-").
      if (token.value === undefined || token.value === "") usageError(`--${token.name} needs a value (${placeholder(flag)})`);
      if (!token.inlineValue && token.value.length > 1 && token.value.startsWith("-")) {
        // The next argument looks like a flag: most likely the value was forgotten.
        const hint = token.value.startsWith("--") ? "" : `; for one starting with "-", write --${token.name}=${token.value}`;
        usageError(`--${token.name} needs a value (${placeholder(flag)})${hint}`);
      }
      given[token.name] = token.value;
    }
  }
  const max = spec.positionals?.max ?? 0;
  if (positionals.length > max) {
    usageError(
      max === 0
        ? `unexpected argument ${JSON.stringify(positionals[0])}`
        : `too many arguments: ${positionals.map((p) => JSON.stringify(p)).join(" ")}`,
    );
  }

  const values: Record<string, string | boolean | undefined> = {};
  const fromEnv = new Set<string>();
  for (const [name, flag] of Object.entries(spec.flags)) {
    if (flag.type === "boolean") {
      values[name] = given[name] === true;
      continue;
    }
    let value = given[name] as string | undefined;
    if (value === undefined && flag.env !== undefined && process.env[flag.env] !== undefined && process.env[flag.env] !== "") {
      value = process.env[flag.env];
      fromEnv.add(name);
    }
    value ??= flag.default;
    if (value === undefined) {
      if (flag.required) usageError(`--${name} is required${flag.env ? ` (or set ${flag.env})` : ""}`);
      values[name] = value;
      continue;
    }
    const label = fromEnv.has(name) ? `${flag.env} (for --${name})` : `--${name}`;
    checkValue(label, flag, value);
    values[name] = value;
  }

  return { values: values as CliValues<F>, positionals };
}

function checkValue(label: string, flag: StringFlag, value: string): void {
  const got = JSON.stringify(value);
  if (flag.choices && !flag.choices.includes(value)) {
    const last = flag.choices.length - 1;
    const expected = last > 0 ? `${flag.choices.slice(0, last).join(", ")} or ${flag.choices[last]}` : flag.choices.join("");
    usageError(`${label}: expected ${expected}, got ${got}`);
  }
  switch (flag.kind) {
    case "duration": {
      let ms: number;
      try {
        ms = parseDuration(value);
      } catch {
        usageError(`${label}: not a duration: ${got} (try 90s, 5m, 2h or 1h30m)`);
      }
      if (!(ms > 0)) usageError(`${label}: must be longer than 0, got ${got}`);
      break;
    }
    case "integer": {
      const n = Number(value);
      if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) usageError(`${label}: not a whole number: ${got}`);
      if (flag.min !== undefined && n < flag.min) usageError(`${label}: must be at least ${flag.min}, got ${got}`);
      if (flag.max !== undefined && n > flag.max) usageError(`${label}: must be at most ${flag.max}, got ${got}`);
      break;
    }
    case "url":
    case "uri": {
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        usageError(`${label}: not a URL: ${got}${flag.kind === "url" ? " (expected http:// or https://…)" : ""}`);
      }
      if (flag.kind === "url" && url.protocol !== "http:" && url.protocol !== "https:") {
        usageError(`${label}: expected an http:// or https:// URL, got ${got}`);
      }
      break;
    }
  }
}

/**
 * Runs `main` and exits with its code. A {@link UsageError} becomes `error: …` and a
 * hint to --help on stderr, exit 2; any other error one line `<name>: message`, exit 1.
 */
export function runMain(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`error: ${error.message}\nrun with --help for usage\n`);
        process.exit(2);
      }
      process.stderr.write(`${name}: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}

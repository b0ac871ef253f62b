/**
 * Every TypeScript snippet in the README and the docs compiles under `tsc --strict` against
 * the package as a user installs it: `npm pack`, the tarball unpacked into a fresh project's
 * node_modules (its own dependencies and the peers linked from this repository's install),
 * one module per snippet, `connect-oidc` resolving to the packed `dist`, never to `src`.
 *
 * Which blocks are what (the info string after the opening fence, and the line before it):
 * - ```ts (or typescript): a snippet. It must compile as written: what it uses comes from an
 *   import or a visible `declare const`. The one module a user writes that a snippet may
 *   import is its generated service, `./gen/my_service_pb.js` (`MyService`): the test
 *   provides it from this repository's generated Echo service.
 * - ```ts signature: a sketch of signatures in docs/API.md (the contract's notation, not a
 *   program). Allowed in docs/API.md only; every name a sketch line declares at its start
 *   (`createX(`, `interface X`, `type X =`) must be an export of the packed package.
 * - a snippet that deliberately does not compile here carries `<!-- not compiled: reason -->`
 *   on the line right before its fence. Rare: at most two in all the docs, each with a reason.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import ts from "typescript";
import { type CodeBlock, codeBlocks, markdownFiles, readText } from "../support/markdown-docs.js";
import { npmPack } from "../support/npm-pack.js";

const root = resolve(import.meta.dirname, "../..");
const isTypeScript = (b: CodeBlock) => b.lang === "ts" || b.lang === "typescript";
/** A snippet's file under snippets/; the testing guide's test sits in system/, as test/system/readme-integration.test.ts does. */
const snippetName = (b: CodeBlock) => `${b.code.includes('"../../gen/') ? "system/" : ""}${b.file.replace(/[/.]/g, "_")}_L${b.line}.ts`;

/** A project with the packed connect-oidc in node_modules and everything else linked from ours. */
async function installPacked(dir: string): Promise<void> {
  const packed = await npmPack(dir);
  const modules = join(dir, "node_modules");
  mkdirSync(join(modules, "connect-oidc"), { recursive: true });
  execFileSync("tar", ["-xzf", join(dir, packed.filename), "-C", join(modules, "connect-oidc"), "--strip-components=1"]);
  for (const name of readdirSync(join(root, "node_modules"))) {
    if (name === "connect-oidc" || name.startsWith(".")) continue;
    symlinkSync(join(root, "node_modules", name), join(modules, name));
  }
  symlinkSync(join(root, "gen"), join(dir, "gen")); // for `../../gen/…` in the testing guide's test (snippets/system/)
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "snippets", private: true, type: "module" }));
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        moduleDetection: "force",
        lib: ["ES2023", "ESNext.Disposable", "DOM"],
        types: ["node"],
        skipLibCheck: true,
        noEmit: true,
      },
      include: ["snippets/**/*.ts"],
    }),
  );
  mkdirSync(join(dir, "snippets/gen"), { recursive: true });
  mkdirSync(join(dir, "snippets/system"), { recursive: true });
  writeFileSync(
    join(dir, "snippets/gen/my_service_pb.ts"),
    `export { EchoService as MyService } from "../../gen/connectoidc/test/v1/echo_pb.js";\n`,
  );
}

/** The name a sketch line declares at its start: `createX(`, `interface X`, `type X =`, `class X`, `const x:`. */
function declaredName(line: string): string | undefined {
  const m =
    /^(?:(?:interface|type|class|const|function)\s+)?([A-Za-z_$][\w$]*)\s*[(<:=]|^(?:interface|type|class)\s+([A-Za-z_$][\w$]*)/.exec(line);
  return m?.[1] ?? m?.[2];
}

/** Every name (value or type) the packed package's entry points export, read from its ESM typings. */
function packedExports(dir: string): Set<string> {
  const pkg = join(dir, "node_modules/connect-oidc");
  const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as {
    exports: Record<string, { import?: { types: string } }>;
  };
  const entries = Object.values(manifest.exports).flatMap((e) => (e.import ? [join(pkg, e.import.types)] : []));
  const program = ts.createProgram(entries, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const names = entries.flatMap((file) => {
    const module = checker.getSymbolAtLocation(program.getSourceFile(file)!);
    return module ? checker.getExportsOfModule(module).map((s) => s.name) : [];
  });
  return new Set(names);
}

describe("the snippets in the README and the docs", () => {
  const blocks = markdownFiles(root).flatMap((file) => codeBlocks(file, readText(root, file)).filter(isTypeScript));
  const snippets = blocks.filter((b) => b.variant === "" && b.notCompiled === undefined);

  it("are snippets, API.md signature sketches, or marked as not compiled with a reason (at most two)", () => {
    assert.ok(
      snippets.some((b) => b.file === "README.md"),
      "the README has a compiled example",
    );
    const signaturesElsewhere = blocks.filter((b) => b.variant !== "" && b.file !== "docs/API.md");
    assert.deepEqual(
      signaturesElsewhere.map((b) => `${b.file}:${b.line} ${b.variant}`),
      [],
      "signature sketches belong in docs/API.md",
    );
    assert.ok(
      blocks.every((b) => b.variant === "" || b.variant === "signature"),
      "the only variant is `ts signature`",
    );
    const notCompiled = blocks.filter((b) => b.notCompiled !== undefined);
    assert.ok(notCompiled.length <= 2, `fragments stay rare: ${notCompiled.map((b) => `${b.file}:${b.line}`).join(", ")}`);
    for (const b of notCompiled) assert.ok(b.notCompiled!.length >= 10, `${b.file}:${b.line} says why it is not compiled`);
  });

  const dir = mkdtempSync(join(tmpdir(), "connect-oidc-snippets-"));
  before(() => installPacked(dir), { timeout: 300_000 });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("compile under tsc --strict against the packed package (and a wrong one fails)", { timeout: 300_000 }, () => {
    for (const b of snippets) writeFileSync(join(dir, "snippets", snippetName(b)), b.code);
    // A snippet that must fail: proves the check reports errors (issuer missing).
    writeFileSync(
      join(dir, "snippets/canary.ts"),
      `import { createTokenManager } from "connect-oidc";\ncreateTokenManager({ clientId: "c" });\n`,
    );

    const tsc = spawnSync(
      process.execPath,
      [join(root, "node_modules/typescript/bin/tsc"), "-p", ".", "--pretty", "false", "--listFiles"],
      {
        cwd: dir,
        encoding: "utf8",
      },
    );
    const output = tsc.stdout.split("\n");
    const files = output.filter((l) => l.startsWith("/"));
    assert.ok(
      files.some((f) => f.includes("/node_modules/connect-oidc/dist/esm/")),
      "connect-oidc resolves to the packed dist",
    );
    assert.deepEqual(
      files.filter((f) => f.startsWith(join(root, "src"))),
      [],
      "nothing from src/",
    );
    const errors = output.filter((l) => /error TS\d+/.test(l));
    const where = new Map(snippets.map((b) => [`snippets/${snippetName(b)}`, b]));
    const located = errors
      .filter((e) => !e.startsWith("snippets/canary.ts"))
      .map((e) => {
        const m = /^(.*?)\((\d+),\d+\): (.*)$/.exec(e);
        const block = m ? where.get(m[1]!) : undefined;
        return block ? `${block.file}:${block.line + Number(m![2])}: ${m![3]}` : e;
      });
    assert.deepEqual(located, [], `snippets that do not compile:\n${located.join("\n")}`);
    assert.ok(
      errors.some((e) => e.startsWith("snippets/canary.ts(2,")),
      `the wrong snippet fails: ${tsc.stdout}${tsc.stderr}`,
    );
  });

  it("API.md's signature sketches name exports of the packed package, and only those", () => {
    const sketched = new Set(
      blocks.filter((b) => b.variant === "signature").flatMap((b) => b.code.split("\n").flatMap((line) => declaredName(line) ?? [])),
    );
    const exported = packedExports(dir);
    assert.ok(sketched.size >= 30 && exported.has("createTokenManager"), `read the sketches (${sketched.size}) and the exports`);
    assert.ok(!exported.has("createNoSuchThing"), "a name that is not exported is missed");
    assert.deepEqual(
      [...sketched].filter((name) => !exported.has(name)),
      [],
      "names in docs/API.md that the package does not export",
    );
  });
});

/**
 * The shape of src/ that the style guide asks for, kept by a test rather than by review:
 * every function reads in one screen (at most 60 lines of its own: a nested function's body
 * counts for the nested function, not for the one around it), and every file opens with a
 * comment saying what it owns. Read with the TypeScript compiler's parser, not a regex.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import ts from "typescript";

const root = resolve(import.meta.dirname, "../..");
const MAX_OWN_LINES = 60;

function sourceFiles(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

const files = sourceFiles(join(root, "src"))
  .sort()
  .map((path) => {
    const name = relative(root, path);
    return { name, source: ts.createSourceFile(name, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, true) };
  });

type FunctionNode = ts.SignatureDeclaration & { readonly body?: ts.Node };

function isFunction(node: ts.Node): node is FunctionNode {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isFunctionExpression(node) ||
    ts.isArrowFunction(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isConstructorDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node)
  );
}

/** The functions directly inside `node` (not those inside them). */
function innerFunctions(node: ts.Node): FunctionNode[] {
  const found: FunctionNode[] = [];
  const visit = (child: ts.Node) => {
    if (isFunction(child)) found.push(child);
    else ts.forEachChild(child, visit);
  };
  ts.forEachChild(node, visit);
  return found;
}

const lineOf = (source: ts.SourceFile, position: number) => source.getLineAndCharacterOfPosition(position).line;

/**
 * The lines of a function that are its own: from its first line to its last, without the
 * lines strictly inside a nested function's body (its first and last line, where it is
 * called or passed, stay the outer function's).
 */
function ownLines(source: ts.SourceFile, fn: FunctionNode): number {
  const lines = new Set<number>();
  for (let line = lineOf(source, fn.getStart(source)); line <= lineOf(source, fn.getEnd()); line++) lines.add(line);
  for (const inner of innerFunctions(fn)) {
    if (inner.body === undefined) continue;
    const last = lineOf(source, inner.body.getEnd());
    for (let line = lineOf(source, inner.body.getStart(source)) + 1; line < last; line++) lines.delete(line);
  }
  return lines.size;
}

function functionName(fn: FunctionNode): string {
  if (fn.name !== undefined) return fn.name.getText();
  if (ts.isConstructorDeclaration(fn)) return "constructor";
  const parent = fn.parent;
  if ((ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) && parent.name) {
    return parent.name.getText();
  }
  return "(anonymous)";
}

function longFunctions(): string[] {
  const found: string[] = [];
  for (const { name, source } of files) {
    const visit = (node: ts.Node) => {
      if (isFunction(node)) {
        const length = ownLines(source, node);
        const line = lineOf(source, node.getStart(source)) + 1;
        if (length > MAX_OWN_LINES) found.push(`${name}:${line} ${functionName(node)} has ${length} lines of its own`);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return found;
}

/**
 * A header is a comment before the first statement that is not that statement's own doc
 * comment: an import or re-export may follow it directly; a declaration needs a second
 * comment (its doc) or a blank line between the header and itself.
 */
function hasHeader(source: ts.SourceFile): boolean {
  const first = source.statements[0];
  if (first === undefined) return false;
  const text = source.getFullText();
  const comments = ts.getLeadingCommentRanges(text, 0) ?? [];
  if (comments.length === 0) return false;
  const headerOnly = ts.isImportDeclaration(first) || ts.isExportDeclaration(first) || ts.isImportEqualsDeclaration(first);
  if (headerOnly || comments.length > 1) return true;
  const between = text.slice(comments[0]!.end, first.getStart(source));
  return /\n\s*\n/.test(between);
}

describe("the shape of src/", () => {
  it(`has no function with more than ${MAX_OWN_LINES} lines of its own`, () => {
    const long = longFunctions();
    assert.deepEqual(long, [], `split these into named steps:\n${long.join("\n")}`);
  });

  it("opens every file with a header comment saying what it owns", () => {
    const missing = files.filter(({ source }) => !hasHeader(source)).map(({ name }) => `${name}:1`);
    assert.deepEqual(missing, [], `give these files a header comment:\n${missing.join("\n")}`);
  });

  it("measures a function's own lines without its nested functions' bodies", () => {
    const source = ts.createSourceFile(
      "sample.ts",
      ["function outer() {", "  const a = 1;", "", "  run(() => {", "    inner();", "    inner();", "  });", "  return a;", "}"].join("\n"),
      ts.ScriptTarget.Latest,
      true,
    );
    const outer = source.statements[0] as ts.FunctionDeclaration;
    // All but lines 5 and 6, the arrow's body.
    assert.equal(ownLines(source, outer), 7);
    const [arrow] = innerFunctions(outer);
    assert.equal(ownLines(source, arrow!), 4);
  });
});

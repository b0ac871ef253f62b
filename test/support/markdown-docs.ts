/**
 * The repository's Markdown as the doc tests read it: which files are docs, their fenced code
 * blocks (with the line each starts on and its "not compiled" mark), their links and the
 * anchors their headings make (GitHub's rule).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

/** Folders that are not part of the repository's own docs: installed, built or generated. */
const skipped = new Set([".git", "node_modules", "dist", ".tmp", "docs/reference"]);

/** Every Markdown file of the repository, relative to `root`, sorted. */
export function markdownFiles(root: string, dir = root): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const rel = relative(root, path);
    if (skipped.has(rel)) continue;
    if (entry.isDirectory()) found.push(...markdownFiles(root, path));
    else if (entry.isFile() && entry.name.endsWith(".md")) found.push(rel);
  }
  return found.sort();
}

export interface CodeBlock {
  readonly file: string;
  /** The 1-based line of the opening fence: the code starts on the next line. */
  readonly line: number;
  /** The info string's first word (`ts`, `sh`, …) and the rest (`signature`). */
  readonly lang: string;
  readonly variant: string;
  readonly code: string;
  /** The reason given by `<!-- not compiled: reason -->` on the line before the fence. */
  readonly notCompiled?: string;
}

const fence = /^(\s*)(`{3,}|~{3,})(.*)$/;
const notCompiledMark = /^\s*<!--\s*not compiled:\s*(.*?)\s*-->\s*$/;

/** The fenced code blocks of one Markdown text, dedented by their fence's indentation. */
export function codeBlocks(file: string, text: string): CodeBlock[] {
  const lines = text.split("\n");
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = fence.exec(lines[i]!);
    if (!open) continue;
    const [, indent = "", marker = "", info = ""] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = fence.exec(lines[j]!);
      if (close && close[2]!.startsWith(marker) && close[3]!.trim() === "") break;
      body.push(lines[j]!.startsWith(indent) ? lines[j]!.slice(indent.length) : lines[j]!.trimStart());
    }
    const [lang = "", ...rest] = info.trim().split(/\s+/);
    const mark = i > 0 ? notCompiledMark.exec(lines[i - 1]!) : null;
    blocks.push({
      file,
      line: i + 1,
      lang,
      variant: rest.join(" "),
      code: `${body.join("\n")}\n`,
      ...(mark ? { notCompiled: mark[1]! } : {}),
    });
    i = j;
  }
  return blocks;
}

/** The text with fenced blocks and code spans blanked (same length, same lines): links inside code are not links. */
function prose(text: string): string {
  const lines = text.split("\n");
  let open: string | undefined;
  return lines
    .map((line) => {
      const f = fence.exec(line);
      if (open !== undefined) {
        if (f && f[2]!.startsWith(open) && f[3]!.trim() === "") open = undefined;
        return "";
      }
      if (f) {
        open = f[2]!;
        return "";
      }
      return line.replace(/`[^`]*`/g, (span) => " ".repeat(span.length));
    })
    .join("\n");
}

export interface Link {
  readonly target: string;
  readonly line: number;
}

/** Inline links and images (`[text](target)`, text over several lines too) and reference definitions. */
export function links(text: string): Link[] {
  const source = prose(text);
  const lineOf = (index: number) => source.slice(0, index).split("\n").length;
  const found: Link[] = [];
  for (const m of source.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) found.push({ target: m[1]!, line: lineOf(m.index) });
  for (const m of source.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) found.push({ target: m[1]!, line: lineOf(m.index) });
  return found;
}

/** Relative paths named in code spans of the prose (`../x/y.md`): a path a reader is sent to, like a link. */
export function pathMentions(text: string): Link[] {
  const found: Link[] = [];
  let open: string | undefined;
  text.split("\n").forEach((line, i) => {
    const f = fence.exec(line);
    if (open !== undefined) {
      if (f && f[2]!.startsWith(open) && f[3]!.trim() === "") open = undefined;
      return;
    }
    if (f) open = f[2]!;
    else for (const m of line.matchAll(/`(\.\.?\/[^`\s]*)`/g)) found.push({ target: m[1]!, line: i + 1 });
  });
  return found;
}

/** The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export function anchors(text: string): Set<string> {
  const original = text.split("\n");
  const seen = new Map<string, number>();
  const result = new Set<string>();
  prose(text)
    .split("\n")
    .forEach((blanked, i) => {
      if (!/^#{1,6}\s/.test(blanked)) return; // a heading outside code
      const words = (/^#{1,6}\s+(.*?)\s*#*\s*$/.exec(original[i]!)?.[1] ?? "").replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
      const slug = words
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, "")
        .replace(/ /g, "-");
      const count = seen.get(slug) ?? 0;
      seen.set(slug, count + 1);
      result.add(count === 0 ? slug : `${slug}-${count}`);
    });
  return result;
}

export const readText = (root: string, file: string) => readFileSync(join(root, file), "utf8");

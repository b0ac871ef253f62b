/**
 * The links in the repository's Markdown go somewhere a reader can follow: a relative link
 * names a file (or folder) of the repository and never climbs out of it; an anchor names a
 * heading of its document; a link to this repository's files on GitHub names a file that
 * exists; no link points at a private or example host, and no code span names a path outside
 * the repository. The README is also the npm package
 * page, where relative links break: it links to the repository's files by absolute URL only.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { anchors, links, markdownFiles, pathMentions, readText } from "../support/markdown-docs.js";

const root = resolve(import.meta.dirname, "../..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  repository: { url: string };
  homepage: string;
  bugs: { url: string };
};
const repository = pkg.repository.url.replace(/^git\+/, "").replace(/\.git$/, "");
const privateHost =
  /^(localhost|127\.|10\.|192\.168\.|0\.0\.0\.0|\[::1\])|\.(local|internal|example|test|invalid)$|(^|\.)example\.(com|org|net)$/;

/** What is wrong with one link of `file` (relative to the repository root), or undefined. */
function problem(file: string, target: string): string | undefined {
  if (/^mailto:/.test(target)) return undefined;
  if (/^[a-z][a-z+.-]*:/i.test(target) && !/^https?:/.test(target)) return "a scheme a reader cannot follow";
  if (/^https?:/.test(target)) {
    const url = new URL(target);
    if (privateHost.test(url.hostname)) return "a private or example host";
    if (!target.startsWith(`${repository}/`) && target !== repository) return undefined; // a public site
    const path = /^\/(?:blob|tree)\/main\/(.*)$/.exec(url.pathname.slice(new URL(repository).pathname.length))?.[1];
    if (path === undefined)
      return /^\/(issues|pulls?|releases)?$/.test(url.pathname.slice(new URL(repository).pathname.length))
        ? undefined
        : "not a file of the repository's main branch";
    return inRepository(decodeURIComponent(path), url.hash.slice(1));
  }
  const [path = "", anchor = ""] = target.split("#");
  if (path === "") return anchor !== "" && !anchors(readText(root, file)).has(anchor) ? `no heading #${anchor} here` : undefined;
  const abs = resolve(root, dirname(file), path);
  const rel = relative(root, abs);
  if (rel.startsWith("..")) return "outside the repository";
  return inRepository(rel, anchor);
}

function inRepository(path: string, anchor: string): string | undefined {
  const abs = join(root, path);
  if (/^(node_modules|dist|docs\/reference|\.tmp)(\/|$)/.test(path)) return "a file that is not in the repository";
  if (!existsSync(abs)) return "no such file in the repository";
  if (anchor !== "" && statSync(abs).isFile() && path.endsWith(".md") && !anchors(readText(root, path)).has(anchor))
    return `no heading #${anchor} there`;
  return undefined;
}

describe("links in the docs", () => {
  it("package.json names the repository, its homepage and where bugs go", () => {
    assert.match(repository, /^https:\/\/github\.com\/[^/]+\/[^/]+$/);
    assert.ok(pkg.homepage.startsWith(repository) && pkg.bugs.url.startsWith(repository));
  });

  it("resolve inside the repository: files that exist, headings that exist, public sites", () => {
    const broken = markdownFiles(root).flatMap((file) =>
      links(readText(root, file)).flatMap(({ target, line }) => {
        const why = problem(file, target);
        return why === undefined ? [] : [`${file}:${line} ${target}: ${why}`];
      }),
    );
    assert.deepEqual(broken, [], `broken links:\n${broken.join("\n")}`);
  });

  it("name no path outside the repository, even in code spans (`../elsewhere/API.md`)", () => {
    const outside = markdownFiles(root).flatMap((file) =>
      pathMentions(readText(root, file))
        .filter(({ target }) => relative(root, resolve(root, dirname(file), target)).startsWith(".."))
        .map(({ target, line }) => `${file}:${line} ${target}`),
    );
    assert.deepEqual(outside, [], `paths outside the repository:\n${outside.join("\n")}`);
  });

  it("in the README (the npm package page) are absolute or in-page: relative file links break there", () => {
    const relativeLinks = links(readText(root, "README.md")).filter(({ target }) => !/^(https?:|mailto:|#)/.test(target));
    assert.deepEqual(
      relativeLinks.map(({ target, line }) => `README.md:${line} ${target}`),
      [],
      `link to ${repository}/blob/main/<path> instead`,
    );
  });

  it("finds what it should (a link out of the repository, a missing file, a missing heading)", () => {
    assert.equal(problem("README.md", "../shared/design/API.md"), "outside the repository");
    assert.equal(problem("docs/API.md", "../../x.md"), "outside the repository");
    assert.equal(problem("docs/guides/ways-in.md", "../API.md#no-such-heading"), "no heading #no-such-heading there");
    assert.equal(problem("README.md", `${repository}/blob/main/docs/NOPE.md`), "no such file in the repository");
    assert.equal(problem("README.md", "http://localhost:8080/x"), "a private or example host");
    assert.equal(problem("README.md", `${repository}/blob/main/docs/API.md#stores`), undefined);
  });
});

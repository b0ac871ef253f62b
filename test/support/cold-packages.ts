/** Which packages a process loaded, for the cold-start test (copied with the child scripts: no dependencies). */

/** Package names (`openid-client`, `@napi-rs/keyring`) in a list of module URLs or paths. */
export function packagesIn(locations: Iterable<string>): string[] {
  const names = new Set<string>();
  for (const location of locations) {
    const at = location.lastIndexOf("node_modules/");
    if (at < 0) continue;
    const [first = "", second = ""] = location.slice(at + "node_modules/".length).split("/");
    names.add(first.startsWith("@") ? `${first}/${second}` : first);
  }
  return [...names].sort();
}

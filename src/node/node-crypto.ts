/**
 * node:crypto, loaded on first use: a process whose stored token is valid (it neither
 * saves, locks nor refreshes) never loads it.
 */

let loaded: Promise<typeof import("node:crypto")> | undefined;

export function nodeCrypto(): Promise<typeof import("node:crypto")> {
  loaded ??= import("node:crypto");
  return loaded;
}

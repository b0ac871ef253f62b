/**
 * Loads oidc-provider (an optional peer dependency of `connect-oidc/testing`) on first use,
 * once per process, without the "Unsupported runtime" line it prints on import under Node 20.
 * Nothing else in the package imports it.
 */
import { ConfigurationError } from "../errors.js";

export type ProviderModule = typeof import("oidc-provider");

let providerModule: Promise<ProviderModule> | undefined;

async function importQuietly(): Promise<ProviderModule> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === "string" && args[0].includes("Unsupported runtime")) return;
    warn.apply(console, args);
  };
  try {
    return await import("oidc-provider");
  } catch (err) {
    throw new ConfigurationError(
      'connect-oidc/testing: the package "oidc-provider" could not be loaded: install it as a dev dependency (npm install --save-dev oidc-provider@^9)',
      { cause: err },
    );
  } finally {
    console.warn = warn;
  }
}

/** oidc-provider's module, imported once. */
export function loadProviderModule(): Promise<ProviderModule> {
  providerModule ??= importQuietly().catch((err: unknown) => {
    providerModule = undefined;
    throw err;
  });
  return providerModule;
}

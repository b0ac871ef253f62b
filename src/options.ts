/**
 * Option checks shared by every factory: one wording, one `ConfigurationError`, thrown at
 * the door (synchronously, before any I/O).
 */
import { ConfigurationError } from "./errors.js";

/** A valid issuer URL; http:// only with `allowInsecureRequests`. */
export function checkIssuer(name: string, issuer: unknown, allowInsecureRequests: unknown): URL {
  if (issuer === undefined || issuer === null || issuer === "") throw new ConfigurationError(`${name}: \`issuer\` is required`);
  if (typeof issuer !== "string" && !(issuer instanceof URL)) throw new ConfigurationError(`${name}: \`issuer\` must be a string or URL`);
  let url: URL;
  try {
    url = new URL(issuer);
  } catch (cause) {
    throw new ConfigurationError(`${name}: \`issuer\` is not a valid URL`, { cause });
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ConfigurationError(`${name}: \`issuer\` must be an https:// URL`);
  }
  if (url.protocol === "http:" && allowInsecureRequests !== true) {
    throw new ConfigurationError(`${name}: an http:// issuer needs \`allowInsecureRequests: true\` (loopback development and tests only)`);
  }
  return url;
}

/** A non-empty string option (`clientId`, ...). */
export function checkString(name: string, option: string, value: unknown, required: boolean): void {
  if (value === undefined && !required) return;
  if (typeof value !== "string" || value === "") {
    throw new ConfigurationError(`${name}: \`${option}\` ${required ? "is required and " : ""}must be a non-empty string`);
  }
}

/**
 * A duration in ms: a finite number ≥ `min`. Timers clamp it to about 24.8 days
 * (`clampDelay`), so a huge value means "that long or longer", never "at once".
 */
export function checkDuration(name: string, option: string, value: unknown, min: number): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new ConfigurationError(`${name}: \`${option}\` must be a finite number of milliseconds ≥ ${min}`);
  }
}

/** An optional function option. */
export function checkFunction(name: string, option: string, value: unknown): void {
  if (value !== undefined && typeof value !== "function") throw new ConfigurationError(`${name}: \`${option}\` must be a function`);
}

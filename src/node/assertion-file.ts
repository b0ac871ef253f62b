/**
 * A client assertion read from a file on every use: the token a platform writes to disk and
 * rotates there (a Kubernetes projected service-account token, a CI runner's identity
 * token). Bounded read, typed errors that name the path and never the content.
 */
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { resolve } from "node:path";
import { type ClientAssertion, isJwtShaped } from "../client-auth.js";
import { ClientAssertionError, ConfigurationError } from "../errors.js";

/** A token file larger than this holds something else: it is not read into memory. */
export const MAX_ASSERTION_FILE_BYTES = 64 * 1024;

/**
 * A `clientAssertion` that reads the JWT from `path` every time a token is requested, so a
 * token the platform rotates on disk is always the one sent (Kubernetes replaces a projected
 * service-account token before it expires, through a symbolic link: links are followed).
 * Surrounding whitespace is trimmed. Fails with a `ClientAssertionError` naming the path,
 * never the file's content: `"missing"`, `"unsafe"` (not a regular file, or writable by
 * other users), `"too-large"` (over 64 KiB), `"unreadable"`, `"malformed"` (empty, or not a
 * JWT).
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 * import { clientAssertionFromFile } from "connect-oidc/node";
 *
 * // A pod whose service-account token (audience: the identity provider) the provider trusts.
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "system:serviceaccount:jobs:reporter",
 *   clientAssertion: clientAssertionFromFile("/var/run/secrets/tokens/idp-token"),
 *   grant: "client_credentials",
 * });
 * ```
 */
export function clientAssertionFromFile(path: string): ClientAssertion {
  if (typeof path !== "string" || path === "") {
    throw new ConfigurationError("clientAssertionFromFile: `path` must be a non-empty file path");
  }
  const file = resolve(path);
  return () => readAssertion(file);
}

async function readAssertion(file: string): Promise<string> {
  const where = `The client assertion file ${file}`;
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    // O_NONBLOCK: a FIFO at the path must not hang the open; it is refused below.
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw openFailure(where, error);
  }
  try {
    // The opened file is the one checked and read: a swap between the two cannot slip in.
    const stats = await handle.stat();
    if (!stats.isFile()) throw new ClientAssertionError("unsafe", `${where} is not a regular file: point the path at the token file`);
    if ((stats.mode & 0o002) !== 0) {
      throw new ClientAssertionError("unsafe", `${where} is writable by every user: it is not used (remove write access for others)`);
    }
    if (stats.size > MAX_ASSERTION_FILE_BYTES) {
      throw new ClientAssertionError("too-large", `${where} is larger than ${MAX_ASSERTION_FILE_BYTES} bytes: it holds no token`);
    }
    const buffer = Buffer.alloc(MAX_ASSERTION_FILE_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_ASSERTION_FILE_BYTES) {
      throw new ClientAssertionError("too-large", `${where} is larger than ${MAX_ASSERTION_FILE_BYTES} bytes: it holds no token`);
    }
    const assertion = buffer.subarray(0, bytesRead).toString("utf8").trim();
    buffer.fill(0);
    if (assertion === "") throw new ClientAssertionError("malformed", `${where} is empty: the platform has not written its token yet`);
    if (!isJwtShaped(assertion)) throw new ClientAssertionError("malformed", `${where} does not hold a JWT: check the path`);
    return assertion;
  } catch (error) {
    if (error instanceof ClientAssertionError) throw error;
    throw new ClientAssertionError("unreadable", `${where} could not be read (${codeOf(error)}): check the file`);
  } finally {
    await handle.close().catch(() => {});
  }
}

function openFailure(where: string, error: unknown): ClientAssertionError {
  const code = codeOf(error);
  switch (code) {
    case "ENOENT":
    case "ENOTDIR":
      return new ClientAssertionError("missing", `${where} does not exist: mount the platform's token there, or fix the path`);
    case "EACCES":
    case "EPERM":
      return new ClientAssertionError("unreadable", `${where} may not be read by this process (${code}): give it read access`);
    case "EISDIR":
      return new ClientAssertionError("unsafe", `${where} is a folder: point the path at the token file`);
    default:
      return new ClientAssertionError("unreadable", `${where} could not be opened (${code}): check the file`);
  }
}

/** A system error's code (ENOENT, EACCES, ...): nothing else of the error is reported. */
function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[A-Z][A-Z0-9_]{1,31}$/.test(code) ? code : "error";
}

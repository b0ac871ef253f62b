/**
 * Node-only: token stores shared by every process of the user, with cross-process locking
 * (the OS keyring, a file), and the login in the user's browser.
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 * import { keyringStore, loginWithBrowser } from "connect-oidc/node";
 *
 * const issuer = "https://login.example.com";
 * const clientId = "my-cli";
 * const tokens = createTokenManager({ issuer, clientId, store: keyringStore({ service: "my-cli", account: "default" }) });
 * await tokens.setTokens(await loginWithBrowser({ issuer, clientId }));
 * ```
 *
 * @module connect-oidc/node
 */
export { clientAssertionFromFile } from "./node/assertion-file.js";
export { fileStore } from "./node/file-store.js";
export { keyringStore, type KeyringStoreOptions } from "./node/keyring-store.js";
export { createFileLock, type FileLock, type FileLockOptions } from "./node/lock.js";
export { loginWithBrowser, type BrowserLoginOptions } from "./node/login-browser.js";

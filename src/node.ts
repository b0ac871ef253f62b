// Node-only entry point: stores with cross-process locking, and the browser login.
export { fileStore } from "./node/file-store.js";
export { keyringStore, type KeyringStoreOptions } from "./node/keyring-store.js";
export { createFileLock, type FileLock, type FileLockOptions } from "./node/lock.js";
export { loginWithBrowser, type BrowserLoginOptions } from "./node/login-browser.js";

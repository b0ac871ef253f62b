/**
 * The verdict of the Node request wrapper, handed to the server interceptor of the same
 * request through AsyncLocalStorage: the token (and its DPoP proof, whose `jti` is now used)
 * is checked once per request, however many of the two run.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { VerifiedToken } from "./types.js";

export interface EarlyVerdict {
  /** The `authorization` header the verdict is about. */
  readonly authorization: string;
  readonly token: VerifiedToken;
}

export const earlyVerdicts = new AsyncLocalStorage<EarlyVerdict>();

/**
 * The DPoP scheme (RFC 9449): `authorization: DPoP <token>` and a fresh proof from the
 * provider's prover on every attempt, every `DPoP-Nonce` a server sends handed to the prover,
 * and a nonce challenge answered by re-sending with the same token (or failed when its nonce
 * cannot be used); a step-up or scope challenge fails the call (auth-challenge.ts).
 */
import { Code, ConnectError, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import { abortable } from "./abortable.js";
import { challengeFailure } from "./auth-challenge.js";
import { type AuthScheme, NEW_TOKEN, RequestNotSent, SAME_TOKEN, setHeader, unauthenticated } from "./auth-scheme.js";
import { nonceProblem } from "./dpop-proof.js";
import type { DPoPProver } from "./types.js";
import { hasChallengeError } from "./www-authenticate.js";

/** `useHttpGet`: as on the Connect transport, so a GET call's proof says GET. */
export function dpopScheme(prover: DPoPProver, useHttpGet: boolean): AuthScheme {
  return {
    async authorize<R extends UnaryRequest | StreamRequest>(req: R, token: string): Promise<R> {
      const header = new Headers(req.header);
      let proof: string;
      try {
        proof = await abortable(prover.proof({ method: httpMethod(req, useHttpGet), url: req.url, accessToken: token }), req.signal);
      } catch (error) {
        if (req.signal.aborted) throw ConnectError.from(req.signal.reason, Code.Canceled);
        throw new RequestNotSent(unauthenticated(error, false));
      }
      setHeader(header, "authorization", `DPoP ${token}`);
      setHeader(header, "dpop", proof);
      return { ...req, header };
    },
    // Every DPoP-Nonce a server sends (headers, trailers, an error's metadata) is the latest for its origin.
    note(url, headers) {
      const nonce = headers?.get("dpop-nonce");
      if (nonce === null || nonce === undefined) return;
      try {
        prover.nonce(url, nonce);
      } catch {
        // `nonce` must not throw; a prover's failure costs at most a nonce round trip.
      }
    },
    answer(url, refusal) {
      const challenged = challengeFailure("DPoP", url, refusal);
      if (challenged !== undefined) return { kind: "fail", error: challenged };
      if (!isNonceChallenge(refusal)) return NEW_TOKEN;
      const unusable = unusableNonceChallenge(url, refusal);
      return unusable === undefined ? SAME_TOKEN : { kind: "fail", error: unusable };
    },
  };
}

/** MethodOptions.IdempotencyLevel.NO_SIDE_EFFECTS (not imported: @bufbuild/protobuf/wkt would load with the entry). */
const NO_SIDE_EFFECTS = 1;

/**
 * The HTTP method the request goes out with: POST, or GET for a side-effect-free unary call
 * on a Connect transport with `useHttpGet` (which turns it into a GET after the interceptors).
 */
function httpMethod(req: UnaryRequest | StreamRequest, useHttpGet: boolean): string {
  if (useHttpGet && !req.stream && (req.method.idempotency as number) === NO_SIDE_EFFECTS) return "GET";
  return req.requestMethod;
}

/**
 * A DPoP nonce challenge (RFC 9449 §9): a `DPoP` challenge with `error="use_dpop_nonce"`
 * among the `WWW-Authenticate` challenges (another scheme's `error` is not one), whether or
 * not its `DPoP-Nonce` can be used.
 */
function isNonceChallenge(error: unknown): error is ConnectError {
  if (!(error instanceof ConnectError) || error.code !== Code.Unauthenticated) return false;
  return hasChallengeError(error.metadata.get("www-authenticate"), "DPoP", "use_dpop_nonce");
}

/**
 * A nonce challenge whose `DPoP-Nonce` cannot be used: re-sending with the old nonce would
 * only be refused again, so the call fails now, naming the server's broken answer.
 */
function unusableNonceChallenge(url: string, challenge: ConnectError): ConnectError | undefined {
  const problem = nonceProblem(challenge.metadata.get("dpop-nonce"));
  if (problem === undefined) return undefined;
  const cause = new Error(`the server at ${new URL(url).origin} asked for a DPoP nonce (use_dpop_nonce) but sent ${problem}`, {
    cause: challenge,
  });
  return new ConnectError(
    `Not authenticated (${cause.message}): the call was not re-sent; the server must send a valid DPoP-Nonce with its challenge`,
    Code.Unauthenticated,
    challenge.metadata,
    undefined,
    cause,
  );
}

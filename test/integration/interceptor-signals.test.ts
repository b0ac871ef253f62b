/**
 * What the interceptor tells its TokenProvider, and how long it waits for one: `accepted(token)`
 * after a call that succeeded, `getAccessToken({ rejected })` after every refusal, and a wait for
 * a token that ends with the call's deadline or signal even when the provider ignores the signal.
 * Hand-written providers (to see each call) against real connect-node servers and a real IdP.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { Code, type Client, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import { createAuthInterceptor, type TokenProvider } from "../../src/index.js";
import { type Idp, startIdp } from "../support/idp.js";
import { type RecordedRequest, startServer, type TestServer } from "../support/server.js";
import { KINDS, type Kind, serverFor, transportFor } from "../support/transports.js";

// fetch cannot stream a request body: connect-web has no client-streaming or bidi calls.
const hasClientStreaming = (kind: Kind) => kind !== "connect-web";

/**
 * One call of each shape the transport has, each checked: a server stream of 2, a client
 * stream of 1 (not on connect-web), and the unary call first, whose reply it returns.
 */
async function callEveryShape(client: Client<typeof EchoService>, kind: Kind) {
  const reply = await client.say({ text: "hi" });
  const counts: number[] = [];
  for await (const m of client.countdown({ text: "hi", count: 2 })) counts.push(m.count);
  assert.deepEqual(counts, [2, 1]);
  if (hasClientStreaming(kind)) {
    assert.equal(
      (
        await client.collect(
          (async function* () {
            yield { text: "x" };
          })(),
        )
      ).count,
      1,
    );
  }
  return reply;
}
// Bidi needs HTTP/2 (connect-node answers 505 to a bidi call over HTTP/1.1).
const hasBidi = (kind: Kind) => kind === "connect-h2" || kind === "grpc";

/**
 * A provider that hands out `tokens` in turn: the first until it is refused, then the next
 * (the last one stays). Records every request and every `accepted`.
 */
function recordingProvider(tokens: readonly string[]) {
  let current = 0;
  const requests: { readonly rejected: string | undefined }[] = [];
  const accepted: string[] = [];
  const provider = {
    async getAccessToken(options?: { readonly signal?: AbortSignal; readonly rejected?: string }) {
      requests.push({ rejected: options?.rejected });
      if (options?.rejected === tokens[current] && current < tokens.length - 1) current += 1;
      return tokens[current]!;
    },
    accepted(token: string) {
      accepted.push(token);
    },
  } satisfies TokenProvider;
  const rejected = () => requests.flatMap((r) => (r.rejected === undefined ? [] : [r.rejected]));
  return { provider, accepted, rejected };
}

/** A provider that hands out `first` (if given) and then never answers, whatever the signal says. */
function stuckProvider(first?: string): TokenProvider {
  let handedOut = first === undefined;
  return {
    getAccessToken() {
      if (!handedOut) {
        handedOut = true;
        return Promise.resolve(first!);
      }
      return new Promise<string>(() => {});
    },
  };
}

describe("interceptor ↔ token provider signals (real servers)", () => {
  let idp: Idp;
  let h1: TestServer;
  let h2: TestServer;

  before(async () => {
    idp = await startIdp({ accessTokenTtl: 3600 });
    h1 = await startServer({ idp, http2: false });
    h2 = await startServer({ idp, http2: true });
  });
  after(async () => {
    await h1.close();
    await h2.close();
    await idp.close();
  });

  for (const kind of KINDS) {
    describe(kind, () => {
      const server = () => serverFor(kind, h1, h2);
      const transport = (tokens: TokenProvider): Transport => transportFor(kind, h1, h2, [createAuthInterceptor(tokens)]);
      const clientOf = (tokens: TokenProvider): Client<typeof EchoService> => createClient(EchoService, transport(tokens));
      /** A fresh access token from a real login: valid until revoked. */
      const freshToken = async () => (await idp.login()).access_token;
      const requestsOf = async (marker: string): Promise<RecordedRequest[]> => {
        const all = server().stats.requests;
        await Promise.all(all.map((r) => r.done));
        return all.filter((r) => Buffer.from(r.body).includes(Buffer.from(marker)));
      };

      describe("accepted(token) after a call that succeeded", () => {
        it("unary: once the call returned", async () => {
          const a = await freshToken();
          const { provider, accepted } = recordingProvider([a]);
          await clientOf(provider).say({ text: "hi" });
          assert.deepEqual(accepted, [a]);
        });

        it("unary re-sent after a refusal: the fresh token is accepted, the refused one is not", async () => {
          const [a, b] = [await freshToken(), await freshToken()];
          server().revoke(a);
          const { provider, accepted, rejected } = recordingProvider([a, b]);
          await clientOf(provider).say({ text: "hi" });
          assert.deepEqual(rejected(), [a]);
          assert.deepEqual(accepted, [b]);
        });

        it("a refused call is not reported as accepted", async () => {
          const a = await freshToken();
          server().revoke(a);
          const { provider, accepted } = recordingProvider([a]);
          const error = await fails(clientOf(provider).say({ text: "hi" }));
          assert.equal(error.code, Code.Unauthenticated);
          assert.deepEqual(accepted, []);
        });

        it("server-streaming: as soon as the first message arrived", async () => {
          const a = await freshToken();
          const { provider, accepted } = recordingProvider([a]);
          const seenAtFirst: string[][] = [];
          for await (const _ of clientOf(provider).countdown({ text: "hi", count: 3 })) {
            if (seenAtFirst.length === 0) seenAtFirst.push([...accepted]);
          }
          assert.deepEqual(seenAtFirst, [[a]]);
          assert.deepEqual(accepted, [a], "once per call");
        });

        it("server-streaming: a stream that ended without a message and without error", async () => {
          const a = await freshToken();
          const { provider, accepted } = recordingProvider([a]);
          for await (const _ of clientOf(provider).countdown({ text: "hi", count: 0 })) assert.fail("no message expected");
          assert.deepEqual(accepted, [a]);
        });

        if (hasClientStreaming(kind)) {
          it("client-streaming: once the response arrived", async () => {
            const a = await freshToken();
            const { provider, accepted } = recordingProvider([a]);
            async function* messages() {
              yield { text: "one" };
              yield { text: "two" };
            }
            const res = await clientOf(provider).collect(messages());
            assert.equal(res.count, 2);
            assert.deepEqual(accepted, [a]);
          });
        }

        if (hasBidi(kind)) {
          it("bidi: once per call, at the first message", async () => {
            const a = await freshToken();
            const { provider, accepted } = recordingProvider([a]);
            async function* messages() {
              yield { text: "one" };
              yield { text: "two" };
            }
            let received = 0;
            for await (const _ of clientOf(provider).chat(messages())) received += 1;
            assert.equal(received, 2);
            assert.deepEqual(accepted, [a]);
          });

          it("bidi: a stream that ended without a message and without error", async () => {
            const a = await freshToken();
            const { provider, accepted } = recordingProvider([a]);
            for await (const _ of clientOf(provider).chat((async function* () {})())) assert.fail("no message expected");
            assert.deepEqual(accepted, [a]);
          });
        }

        it("an accepted() that throws, or rejects, does not break the call", async () => {
          const a = await freshToken();
          const unhandled: unknown[] = [];
          const onUnhandled = (reason: unknown) => unhandled.push(reason);
          process.on("unhandledRejection", onUnhandled);
          try {
            const calls: string[] = [];
            const throwing: TokenProvider = {
              getAccessToken: async () => a,
              accepted(token) {
                calls.push(`throw:${token === a}`);
                throw new Error("accepted() broke");
              },
            };
            const rejecting = {
              getAccessToken: async () => a,
              async accepted(token: string) {
                calls.push(`reject:${token === a}`);
                throw new Error("async accepted() broke");
              },
            } satisfies TokenProvider;
            for (const provider of [throwing, rejecting]) {
              assert.equal((await callEveryShape(clientOf(provider), kind)).text, "hi");
            }
            const perProvider = hasClientStreaming(kind) ? 3 : 2;
            assert.deepEqual(calls, [...Array(perProvider).fill("throw:true"), ...Array(perProvider).fill("reject:true")]);
            for (let i = 0; i < 5; i += 1) await tick();
            assert.deepEqual(unhandled, []);
          } finally {
            process.off("unhandledRejection", onUnhandled);
          }
        });

        it("a plain provider with only getAccessToken keeps working, retry included", async () => {
          const [a, b] = [await freshToken(), await freshToken()];
          server().revoke(a);
          const asked: (string | undefined)[] = [];
          const plain: TokenProvider = {
            async getAccessToken(options) {
              asked.push(options?.rejected);
              return options?.rejected === a || asked.length > 1 ? b : a;
            },
          };
          assert.equal((await callEveryShape(clientOf(plain), kind)).subject, idp.accountId);
          assert.deepEqual(asked.slice(0, 2), [undefined, a]);
        });
      });

      describe("a provider that never answers does not hold the call", () => {
        it("unary with timeoutMs: 200 ends with DeadlineExceeded well under a second", async () => {
          const { error, elapsed } = await timed(clientOf(stuckProvider()).say({ text: "hi" }, { timeoutMs: 200 }));
          assert.equal(error.code, Code.DeadlineExceeded);
          assert.ok(elapsed < 700, `took ${elapsed} ms`);
        });

        it("server-streaming with timeoutMs: 200 ends with DeadlineExceeded well under a second", async () => {
          const stream = clientOf(stuckProvider()).countdown({ text: "hi", count: 2 }, { timeoutMs: 200 });
          const { error, elapsed } = await timed(drain(stream));
          assert.equal(error.code, Code.DeadlineExceeded);
          assert.ok(elapsed < 700, `took ${elapsed} ms`);
        });

        if (hasClientStreaming(kind)) {
          it("client-streaming with timeoutMs: 200 ends with DeadlineExceeded well under a second", async () => {
            const call = clientOf(stuckProvider()).collect(
              (async function* () {
                yield { text: "x" };
              })(),
              { timeoutMs: 200 },
            );
            const { error, elapsed } = await timed(call);
            assert.equal(error.code, Code.DeadlineExceeded);
            assert.ok(elapsed < 700, `took ${elapsed} ms`);
          });
        }

        it("the wait for a fresh token after a refusal ends at the deadline too", async () => {
          const a = await freshToken();
          server().revoke(a);
          const marker = randomUUID();
          const { error, elapsed } = await timed(clientOf(stuckProvider(a)).say({ text: marker }, { timeoutMs: 300 }));
          assert.equal(error.code, Code.DeadlineExceeded);
          assert.ok(elapsed < 800, `took ${elapsed} ms`);
          assert.equal((await requestsOf(marker)).length, 1, "sent once, refused, then waited");
        });

        it("the caller's signal aborted during the wait ends the call with Canceled", async () => {
          const controller = new AbortController();
          setTimeout(() => controller.abort(), 100);
          const { error, elapsed } = await timed(clientOf(stuckProvider()).say({ text: "hi" }, { signal: controller.signal }));
          assert.equal(error.code, Code.Canceled);
          assert.ok(elapsed < 600, `took ${elapsed} ms`);
        });

        it("an already aborted signal ends the call with Canceled at once", async () => {
          const { error, elapsed } = await timed(clientOf(stuckProvider()).say({ text: "hi" }, { signal: AbortSignal.abort() }));
          assert.equal(error.code, Code.Canceled);
          assert.ok(elapsed < 500, `took ${elapsed} ms`);
        });
      });

      describe("every refusal is reported, none retried twice", () => {
        it("unary: a refusal of the re-sent attempt is reported", async () => {
          const [a, b] = [await freshToken(), await freshToken()];
          server().revoke(a);
          server().revoke(b);
          const { provider, accepted, rejected } = recordingProvider([a, b]);
          const marker = randomUUID();
          const error = await fails(clientOf(provider).say({ text: marker }));
          assert.equal(error.code, Code.Unauthenticated);
          await waitFor(() => rejected().length >= 2);
          assert.deepEqual(rejected(), [a, b]);
          assert.equal((await requestsOf(marker)).length, 2, "one retry, no more");
          assert.deepEqual(accepted, []);
        });

        it("server-streaming: a refusal of the re-sent attempt is reported", async () => {
          const [a, b] = [await freshToken(), await freshToken()];
          server().revoke(a);
          server().revoke(b);
          const { provider, rejected } = recordingProvider([a, b]);
          const marker = randomUUID();
          const error = await fails(drain(clientOf(provider).countdown({ text: marker, count: 2 })));
          assert.equal(error.code, Code.Unauthenticated);
          await waitFor(() => rejected().length >= 2);
          assert.deepEqual(rejected(), [a, b]);
          assert.equal((await requestsOf(marker)).length, 2, "one retry, no more");
        });

        it("server-streaming: Unauthenticated after the first message is reported, not retried", async () => {
          const a = await freshToken();
          const { provider, accepted, rejected } = recordingProvider([a]);
          const marker = randomUUID();
          server().setUnauthenticatedAfter(2);
          try {
            const counts: number[] = [];
            const error = await fails(
              (async () => {
                for await (const m of clientOf(provider).countdown({ text: marker, count: 5 })) counts.push(m.count);
              })(),
            );
            assert.equal(error.code, Code.Unauthenticated);
            assert.deepEqual(counts, [5, 4]);
          } finally {
            server().setUnauthenticatedAfter(undefined);
          }
          await waitFor(() => rejected().length >= 1);
          assert.deepEqual(rejected(), [a]);
          assert.deepEqual(accepted, [a], "accepted at the first message, then refused: what a revocation looks like");
          assert.equal((await requestsOf(marker)).length, 1);
        });
      });
    });
  }
});

async function fails(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (error) {
    assert.ok(error instanceof ConnectError, String(error));
    return error;
  }
  assert.fail("expected the call to fail");
}

/** How a call failed and how long it took; a call still running after 2 s fails the test instead of hanging it. */
async function timed(p: Promise<unknown>): Promise<{ error: ConnectError; elapsed: number }> {
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("the call was still running after 2000 ms")), 2000);
  });
  try {
    const error = await Promise.race([fails(p), stuck]);
    return { error, elapsed: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
  }
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    // read to the end
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

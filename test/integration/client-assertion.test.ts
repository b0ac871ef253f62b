/**
 * Workload identity (issue 18 item 3): a client authenticates with a JWT a second issuer
 * (the "platform") signs, which the real identity provider trusts through that issuer's
 * JWKS — read from a token file that rotates between requests, refused as a configuration
 * failure (once, no loop) when the provider does not accept it, and a token file that
 * cannot be used named by a typed error that holds nothing of its content.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { decodeJwt } from "jose";
import { ClientAssertionError, ConfigurationError, ProviderConfigurationError, TokenRefreshError } from "../../src/errors.js";
import { clientAssertionFromFile } from "../../src/node.js";
import { createTokenManager, type TokenManagerOptions } from "../../src/token/manager.js";
import type { TokenEvent } from "../../src/types.js";
import { type Idp, startIdp } from "../support/idp.js";
import { type JwtIssuer, startJwtIssuer } from "../support/jwt-issuer.js";
import { createLeakScanner } from "../support/leaks.js";

const CLIENT = "test-workload";

describe("client assertions from the platform (RFC 7523 client authentication)", () => {
  let platform: JwtIssuer;
  let idp: Idp;
  let folder: string;
  /** Every client assertion that reached the provider's token endpoint, in order. */
  const received: string[] = [];

  before(async () => {
    platform = await startJwtIssuer();
    idp = await startIdp({ workloadClient: { jwksUri: platform.jwksUri } });
    // The request body as the provider parsed it, for every token it granted.
    idp.provider.on("grant.success", (ctx) => {
      const assertion = (ctx.oidc.body as { client_assertion?: unknown } | undefined)?.client_assertion;
      if (typeof assertion === "string") received.push(assertion);
    });
    folder = await mkdtemp(join(tmpdir(), "connect-oidc-assertion-"));
  });
  after(async () => {
    await idp?.close();
    await platform?.close();
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  /** A client assertion as a platform issues it for this client: `iss`/`sub` the client, `aud` the provider. */
  const platformToken = (options: Parameters<JwtIssuer["sign"]>[1] = {}) =>
    platform.sign({ iss: CLIENT, sub: CLIENT, aud: idp.issuer }, { typ: "JWT", expiresIn: 600, ...options });

  const managerOptions = (clientAssertion: TokenManagerOptions["clientAssertion"], onEvent?: (e: TokenEvent) => void) => ({
    issuer: idp.issuer,
    clientId: CLIENT,
    clientAssertion,
    grant: "client_credentials" as const,
    allowInsecureRequests: true,
    backoff: { baseMs: 50, maxMs: 100 },
    ...(onEvent !== undefined ? { onEvent } : {}),
  });

  it("reads the token file on every request: the JWT written between requests is the one sent", async () => {
    const file = join(folder, "rotating", "token");
    await mkdir(join(folder, "rotating"));
    const first = await platformToken();
    await writeFile(file, `${first}\n`); // a trailing newline, as `kubectl create token > file` leaves
    using tokens = createTokenManager(managerOptions(clientAssertionFromFile(file)));
    received.length = 0;

    const token1 = await tokens.getAccessToken();
    assert.equal(decodeJwt(token1).client_id, CLIENT, "the provider issued the token to the workload client");
    assert.deepEqual(received, [first], "the file's JWT went out as the client assertion");

    // The platform rotates the token on disk; a server refuses the access token: a new one is asked for.
    const second = await platformToken();
    await writeFile(file, second);
    const token2 = await tokens.getAccessToken({ rejected: token1 });
    assert.notEqual(token2, token1);
    assert.deepEqual(received, [first, second], "the rotated JWT, read anew, was the one sent");
  });

  it("follows the links Kubernetes swaps atomically (..data → a timestamped folder)", async () => {
    const mount = join(folder, "projected");
    await mkdir(join(mount, "v1"), { recursive: true });
    await mkdir(join(mount, "v2"));
    const first = await platformToken();
    const second = await platformToken();
    await writeFile(join(mount, "v1", "token"), first);
    await writeFile(join(mount, "v2", "token"), second);
    await symlink("v1", join(mount, "..data"));
    await symlink(join("..data", "token"), join(mount, "token"));
    using tokens = createTokenManager(managerOptions(clientAssertionFromFile(join(mount, "token"))));
    received.length = 0;
    const token1 = await tokens.getAccessToken();
    // kubelet's swap: a new link, renamed over ..data in one step.
    await symlink("v2", join(mount, "..data_tmp"));
    execFileSync("mv", ["-T", join(mount, "..data_tmp"), join(mount, "..data")]);
    await tokens.getAccessToken({ rejected: token1 });
    assert.deepEqual(received, [first, second]);
  });

  for (const [name, sign] of [
    ["signed with a key the provider does not trust", () => platformToken({ foreignKey: true })],
    ["expired", () => platformToken({ expiresIn: -120 })],
  ] as const) {
    it(`an assertion ${name} ends as a configuration failure, asked once, not retried`, async () => {
      const leaks = createLeakScanner();
      const events: TokenEvent[] = [];
      let calls = 0;
      const clientAssertion = async () => {
        calls++;
        const jwt = await sign();
        leaks.remember(jwt);
        return jwt;
      };
      using tokens = createTokenManager(managerOptions(clientAssertion, (e) => events.push(e)));
      idp.resetStats();
      const error = await tokens.getAccessToken().then(
        () => assert.fail("a refused assertion must not give a token"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof ProviderConfigurationError, `a configuration failure, got ${String(error)}`);
      assert.equal(error.reason, "client");
      assert.match(error.message, /refused this client's assertion \(invalid_client\): check `clientAssertion`/);
      // Asked again: the same error at once, nothing more sent (no loop, no backoff forever).
      for (let i = 0; i < 3; i++) await assert.rejects(tokens.getAccessToken(), (e) => e === error);
      await new Promise((resolve) => setTimeout(resolve, 300)); // longer than the backoff's ceiling: nothing scheduled
      assert.equal(idp.stats.tokenRequests, 1, "one token request in all");
      assert.equal(calls, 1, "the assertion was asked for once");
      assert.deepEqual(events.filter((e) => e.type === "misconfigured").length, 1, "one misconfigured event");
      leaks.assertClean(error, "the error");
      leaks.assertClean(events, "the events");
    });
  }

  it("a clientAssertion that throws (the platform's token service is down) is a wait, not a configuration failure", async () => {
    let down = true;
    const clientAssertion = async () => {
      if (down) throw new Error("metadata service unreachable: eyJsecret.part.here");
      return platformToken();
    };
    using tokens = createTokenManager(managerOptions(clientAssertion));
    idp.resetStats();
    const error = await tokens.getAccessToken().then(
      () => assert.fail("no assertion, no token"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof TokenRefreshError, `a wait, got ${String(error)}`);
    assert.match(error.message, /`clientAssertion` failed \(Error\)/);
    assert.doesNotMatch(`${error.message} ${String((error as Error).cause)}`, /eyJsecret|metadata service/, "nothing of what it threw");
    assert.equal(idp.stats.tokenRequests, 0, "nothing sent without an assertion");
    down = false;
    const end = performance.now() + 5000;
    let token: string | undefined;
    while (token === undefined) {
      if (performance.now() > end) assert.fail("no token within 5 s of the assertion source's return");
      token = await tokens.getAccessToken().catch(() => undefined);
      if (token === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(decodeJwt(token).client_id, CLIENT);
  });

  describe("a token file that cannot be used: a typed error naming the path, never its content", () => {
    const secretContent = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0LXdvcmtsb2FkLXNlY3JldCJ9.c2lnbmF0dXJlLXRoYXQtaXMtc2VjcmV0";

    const refusal = async (path: string, reason: ClientAssertionError["reason"]) => {
      const leaks = createLeakScanner();
      leaks.remember(secretContent);
      using tokens = createTokenManager(managerOptions(clientAssertionFromFile(path)));
      idp.resetStats();
      const error = await tokens.getAccessToken().then(
        () => assert.fail("an unusable file must not give a token"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof ClientAssertionError, `a ClientAssertionError, got ${String(error)}`);
      assert.ok(error instanceof ConfigurationError, "in the configuration family");
      assert.equal(error.code, "ERR_CLIENT_ASSERTION");
      assert.equal(error.reason, reason);
      assert.ok(error.message.includes(path), "the message names the path");
      await assert.rejects(tokens.getAccessToken(), (e) => e === error);
      assert.equal(idp.stats.tokenRequests, 0, "nothing was sent to the provider");
      leaks.assertClean(error, "the error");
    };

    it("missing", () => refusal(join(folder, "nowhere", "token"), "missing"));
    it("writable by every user", async () => {
      const file = join(folder, "open-token");
      await writeFile(file, secretContent);
      await chmod(file, 0o666);
      await refusal(file, "unsafe");
    });
    it("a folder", () => refusal(folder, "unsafe"));
    it("a FIFO (would block a read)", async () => {
      const fifo = join(folder, "fifo-token");
      execFileSync("mkfifo", [fifo]);
      await refusal(fifo, "unsafe");
    });
    it("larger than a token (64 KiB)", async () => {
      const file = join(folder, "huge-token");
      await writeFile(file, `${secretContent}.${"A".repeat(70_000)}`);
      await refusal(file, "too-large");
    });
    it("empty, or not a JWT", async () => {
      const empty = join(folder, "empty-token");
      await writeFile(empty, "\n");
      await refusal(empty, "malformed");
      const notJwt = join(folder, "not-jwt-token");
      await writeFile(notJwt, `password=${secretContent.replaceAll(".", " ")}`);
      await refusal(notJwt, "malformed");
    });
  });

  it("options: an assertion is private_key_jwt, alone", () => {
    const base = { issuer: "https://login.example.com", clientId: CLIENT, grant: "client_credentials" as const };
    const key = { privateKey: {} as CryptoKey };
    assert.throws(() => createTokenManager({ ...base, clientAssertion: "eyJ" as never }), /`clientAssertion` must be a function/);
    assert.throws(
      () => createTokenManager({ ...base, clientAssertion: () => "x", clientAuthentication: "client_secret_post", clientSecret: "s" }),
      /`clientAssertion` is sent as a private_key_jwt client assertion/,
    );
    assert.throws(() => createTokenManager({ ...base, clientAssertion: () => "x", clientPrivateKey: key.privateKey }), ConfigurationError);
    assert.throws(() => clientAssertionFromFile(""), /`path` must be a non-empty file path/);
    createTokenManager({ ...base, clientAssertion: () => "x", clientAuthentication: "private_key_jwt" }).close();
  });
});

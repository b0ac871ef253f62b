/**
 * A private certificate authority for tests, made with `openssl` (Debian's, listed in
 * .ci/apt-packages.txt) in a temporary folder: the CA, a server certificate for
 * `127.0.0.1`/`localhost` and a client certificate (mTLS), each a day long, all PEM.
 * Nothing is trusted by the process: a client trusts the CA only when given it.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface PrivateCa {
  /** PEM of the CA certificate: what a client must trust. */
  readonly ca: string;
  /** The server's certificate (signed by the CA) and key. */
  readonly server: { readonly cert: string; readonly key: string };
  /** A client certificate (signed by the CA, for clientAuth) and key. */
  readonly client: { readonly cert: string; readonly key: string };
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

export function createPrivateCa(): PrivateCa {
  const dir = mkdtempSync(join(tmpdir(), "connect-oidc-ca-"));
  const at = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  try {
    openssl("req", "-x509", ...EC_KEY, "-keyout", at("ca.key"), "-out", at("ca.pem"), "-days", "1", "-subj", "/CN=connect-oidc test CA");
    const issue = (name: string, subject: string, extensions: string) => {
      writeFileSync(at(`${name}.ext`), extensions);
      openssl("req", ...EC_KEY, "-keyout", at(`${name}.key`), "-out", at(`${name}.csr`), "-subj", subject);
      openssl(
        "x509",
        "-req",
        "-in",
        at(`${name}.csr`),
        "-CA",
        at("ca.pem"),
        "-CAkey",
        at("ca.key"),
        "-CAcreateserial",
        "-out",
        at(`${name}.pem`),
        "-days",
        "1",
        "-extfile",
        at(`${name}.ext`),
      );
      return { cert: readFileSync(at(`${name}.pem`), "utf8"), key: readFileSync(at(`${name}.key`), "utf8") };
    };
    const server = issue("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    const client = issue("client", "/CN=test-service", "extendedKeyUsage=clientAuth\n");
    return { ca: readFileSync(at("ca.pem"), "utf8"), server, client };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

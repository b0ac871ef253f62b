/**
 * Row 6: heap after 10,000 refresh cycles driven by the test clock. The identity provider
 * is a stand-in here (an in-memory token endpoint): the row measures the manager's own
 * state, and 10,000 real exchanges would take minutes. Needs node --expose-gc.
 */
import { createTokenManagerWith } from "../src/token/manager.js";
import { createManualClock } from "../test/support/manual-clock.js";
import type { Row } from "./rows.js";

const HOUR = 3600_000;

export async function heapRows(cycles = 10_000): Promise<Row[]> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const clock = createManualClock();
  let n = 0;
  const answer = () => ({
    ok: true as const,
    response: { access_token: `access-${++n}-${"x".repeat(800)}`, refresh_token: `refresh-${n}`, expires_in: 3600 },
  });
  const manager = createTokenManagerWith(
    { issuer: "https://id.example", clientId: "bench", clock },
    { refresh: async () => answer(), clientCredentials: async () => answer() },
  );
  await manager.setTokens({ access_token: "access-0", refresh_token: "refresh-0", expires_in: 3600 });
  const signal = new AbortController().signal;
  const cycle = async () => {
    await clock.advance(HOUR); // expired: the next call refreshes
    const token = await manager.getAccessToken({ signal });
    manager.accepted(token);
    await manager.getAccessToken({ rejected: token }); // a revocation: one forced refresh
  };
  for (let i = 0; i < 200; i += 1) await cycle(); // warm-up
  gc?.();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < cycles; i += 1) await cycle();
  gc?.();
  const grownMiB = (process.memoryUsage().heapUsed - before) / 1024 / 1024;
  manager.close();
  return [
    {
      name: `6. heap growth after ${cycles.toLocaleString("en")} refresh cycles (+ as many forced refreshes)${gc ? "" : " (no --expose-gc: rough)"}`,
      ours: `${grownMiB.toFixed(2)} MiB`,
      baseline: "—",
      target: "< 1 MiB",
      met: grownMiB < 1,
    },
  ];
}

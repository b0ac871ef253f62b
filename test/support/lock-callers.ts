/**
 * Three callers of one store's lock at once, each in and out with 10 ms between: the order
 * of their "in" and "out" shows whether the lock held them one at a time. Shared by the
 * store contract and the kernel keyring worker (which must not load node:test).
 */
export async function threeCallers(lock: <T>(fn: () => Promise<T>) => Promise<T>): Promise<string[]> {
  const order: string[] = [];
  await Promise.all(
    ["a", "b", "c"].map((name) =>
      lock(async () => {
        order.push(`${name} in`);
        await new Promise((resolve) => setTimeout(resolve, 10));
        order.push(`${name} out`);
      }),
    ),
  );
  return order;
}

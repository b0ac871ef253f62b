/** The CPU time a cold-start child used (cold-client.ts and cold-fixed.ts report it). */

/** process.cpuUsage() as ms of user + system time: a figure that other load on the machine moves less than wall time. */
export function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

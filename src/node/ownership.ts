/**
 * Whether a file or lock at a store's path is this user's own: in a folder others may
 * write (the temp folder, sticky), another user can create it first, and a login read
 * from it would be theirs. Shared by fileStore and createFileLock.
 */
import type { Stats } from "node:fs";

/**
 * Why `info` (fstat of an open file, or lstat) is not this user's, or undefined when it
 * is: a link, or another owner. Windows has no user ids: nothing to check there.
 */
export function notOursBecause(info: Stats): string | undefined {
  const uid = process.getuid?.();
  if (uid === undefined) return undefined;
  if (info.isSymbolicLink()) return "is a symbolic link";
  if (info.uid !== uid) return `belongs to user ${info.uid}, not to this user (${uid})`;
  return undefined;
}

/**
 * Why `info` is open to other users, or undefined: `bits` are the permissions group and
 * others must not hold (read and write for a token file, write for a lock). Not on Windows.
 */
export function openToOthersBecause(info: Stats, bits: number): string | undefined {
  if (process.getuid === undefined || (info.mode & bits) === 0) return undefined;
  const read = (info.mode & bits & 0o044) !== 0;
  const write = (info.mode & bits & 0o022) !== 0;
  const verbs = read && write ? "read and written" : read ? "read" : "written";
  return `can be ${verbs} by other users (mode ${octal(info.mode)})`;
}

/** A file mode's permission bits as `chmod` writes them, e.g. 1777. */
export function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(3, "0");
}

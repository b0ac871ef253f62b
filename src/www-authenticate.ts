/**
 * `WWW-Authenticate` challenges (RFC 9110 §11.6.1): a header value, or several joined with
 * ", " as `Headers.get` does, read as a list of challenges — each a case-insensitive scheme
 * with a token68 or auth-params, whose values are tokens or quoted strings (which may hold
 * commas). oauth4webapi has such a parser but does not export it, and the interceptor must
 * not load it anyway (a call with a valid token loads no openid-client).
 */

/** One challenge: the scheme and parameter names in lower case, the values as sent. */
export interface Challenge {
  readonly scheme: string;
  readonly params: ReadonlyMap<string, string>;
  readonly token68?: string;
}

/** RFC 9110 `token`. */
const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;
/** RFC 9110 `token68`, standing alone up to the next comma or the end. */
const TOKEN68 = /[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(,|$))/y;
const SEPARATORS = /[ \t,]*/y;
const SPACES = /[ \t]*/y;
const SPACE_AFTER_SCHEME = /[ \t]+/y;

/** The challenges of `header`; undefined when it is not a well-formed challenge list. */
export function parseChallenges(header: string): Challenge[] | undefined {
  const reader = { text: header, at: 0 };
  const challenges: Challenge[] = [];
  for (;;) {
    skip(reader, SEPARATORS);
    if (reader.at >= reader.text.length) return challenges.length > 0 ? challenges : undefined;
    const scheme = take(reader, TOKEN);
    if (scheme === undefined) return undefined;
    const challenge = challengeBody(reader, scheme.toLowerCase());
    if (challenge === undefined) return undefined;
    challenges.push(challenge);
  }
}

/** Whether one of the challenges is `scheme` (any case) with `error="<error>"`. */
export function hasChallengeError(header: string | null | undefined, scheme: string, error: string): boolean {
  if (header === null || header === undefined) return false;
  const wanted = scheme.toLowerCase();
  return parseChallenges(header)?.some((c) => c.scheme === wanted && c.params.get("error") === error) === true;
}

interface Reader {
  readonly text: string;
  at: number;
}

/** The match of a sticky `pattern` at the reader (consumed), or undefined. */
function take(reader: Reader, pattern: RegExp): string | undefined {
  pattern.lastIndex = reader.at;
  const match = pattern.exec(reader.text);
  if (match === null || match[0] === "") return undefined;
  reader.at += match[0].length;
  return match[0];
}

function skip(reader: Reader, pattern: RegExp): void {
  take(reader, pattern);
}

/** What follows a scheme: nothing, a token68, or auth-params up to the next challenge. */
function challengeBody(reader: Reader, scheme: string): Challenge | undefined {
  const params = new Map<string, string>();
  if (take(reader, SPACE_AFTER_SCHEME) === undefined) {
    // No space: the challenge ends here (a comma, or the end).
    return reader.at >= reader.text.length || reader.text[reader.at] === "," ? { scheme, params } : undefined;
  }
  const token68 = take(reader, TOKEN68);
  if (token68 !== undefined) return { scheme, params, token68 };
  for (;;) {
    const before = reader.at;
    skip(reader, SEPARATORS);
    const name = take(reader, TOKEN);
    if (name === undefined) {
      reader.at = before;
      return { scheme, params };
    }
    skip(reader, SPACES);
    if (reader.text[reader.at] !== "=") {
      // The next challenge's scheme.
      reader.at = before;
      return { scheme, params };
    }
    reader.at += 1;
    skip(reader, SPACES);
    const value = reader.text[reader.at] === '"' ? quoted(reader) : take(reader, TOKEN);
    if (value === undefined) return undefined;
    // A repeated parameter is malformed (RFC 9110 §11.2): the first one counts.
    if (!params.has(name.toLowerCase())) params.set(name.toLowerCase(), value);
    skip(reader, SPACES);
    if (reader.at < reader.text.length && reader.text[reader.at] !== ",") return undefined;
  }
}

/** A quoted-string at the reader, unescaped; undefined if it does not end. */
function quoted(reader: Reader): string | undefined {
  let value = "";
  for (let i = reader.at + 1; i < reader.text.length; i += 1) {
    const c = reader.text[i];
    if (c === '"') {
      reader.at = i + 1;
      return value;
    }
    if (c === "\\") {
      i += 1;
      if (i >= reader.text.length) return undefined;
    }
    value += reader.text[i];
  }
  return undefined;
}

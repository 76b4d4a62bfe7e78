/**
 * What checking one environment file may cost. Real files are a few kilobytes: a few hundred YAML
 * tokens, nesting about 5 deep, a handful of aliases. Each bound is far above that and far below
 * what would keep the checker busy for long (every bound hit is a located issue, never a stall),
 * so a hostile upload costs milliseconds, not seconds: see test/config/fuzz.test.ts.
 */

/** Environment files are a few kilobytes; refusing huge ones keeps a bad upload from costing much. */
export const MAX_FILE_BYTES = 1024 * 1024;

/**
 * Lexical tokens (scalars, indicators, spaces, line breaks, comments): examples/paddock.yml has
 * about 400. The YAML parser spends a few microseconds on each, so this bounds its time.
 */
export const MAX_TOKENS = 25_000;

/** Levels of nested mappings and lists, as written or through aliases; real files use about 5. */
export const MAX_DEPTH = 64;
export const TOO_DEEP = `mappings and lists are nested more than ${MAX_DEPTH} levels deep (an environment file needs about 5)`;

/** Nodes that aliases may add to the data when expanded (a "billion laughs" file adds billions). */
export const MAX_ALIAS_NODES = 5_000;

/** Issues returned for one file; a file with more gets the first ones and a count of the rest. */
export const MAX_ISSUES = 100;

/** Longest issue message; values quoted in messages are cut much shorter (`quote` in words.ts). */
export const MAX_MESSAGE_CHARS = 500;

/** Longest issue path; longer ones (a key of thousands of characters) are cut. */
export const MAX_PATH_CHARS = 200;

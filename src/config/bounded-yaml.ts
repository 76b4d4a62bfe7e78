/**
 * The YAML library's parse, driven token by token so that it stops early: a file with too many
 * tokens or too deep a nesting is refused before the library composes it (its composer recurses
 * once per level, and its parser slows down as the nesting grows).
 */
import { Composer, Lexer, Parser, YAMLParseError } from "yaml";
import type { CST, Document, DocumentOptions, LineCounter, ParseOptions, SchemaOptions } from "yaml";
import { MAX_DEPTH, MAX_TOKENS, TOO_DEEP } from "./limits.ts";

export type BoundedParse = { ok: true; doc: Document } | { ok: false; offset: number; message: string };

/** What the parser's stack holds besides one entry per nested collection: the document, the node being built. */
const STACK_OVERHEAD = 2;

/** Lexes and parses `source` into tokens, or says where a bound was crossed. */
function tokens(source: string, lines: LineCounter): CST.Token[] | { offset: number; message: string } {
  const parser = new Parser(lines.addNewLine);
  lines.addNewLine(0); // Parser.parse() does this itself; Parser.next() does not.
  const out: CST.Token[] = [];
  let count = 0;
  for (const lexeme of new Lexer().lex(source, false)) {
    if (++count > MAX_TOKENS) {
      return { offset: parser.offset, message: `the file is too long to check: more than ${MAX_TOKENS} YAML tokens (an environment file needs a few hundred)` };
    }
    for (const t of parser.next(lexeme)) out.push(t);
    if (parser.stack.length > MAX_DEPTH + STACK_OVERHEAD) {
      return { offset: parser.offset, message: TOO_DEEP };
    }
  }
  for (const t of parser.end()) out.push(t);
  return out;
}

/**
 * `parseDocument` with bounds: the same document and errors (one document only: a second one is a
 * MULTIPLE_DOCS error), or the offset where the file crossed MAX_TOKENS or MAX_DEPTH.
 */
export function parseBounded(source: string, lines: LineCounter, options: DocumentOptions & ParseOptions & SchemaOptions): BoundedParse {
  const cst = tokens(source, lines);
  if (!Array.isArray(cst)) return { ok: false, ...cst };
  let doc: Document | undefined;
  for (const next of new Composer(options).compose(cst, true, source.length)) {
    if (doc === undefined) doc = next;
    else {
      doc.errors.push(new YAMLParseError([next.range[0], next.range[1]], "MULTIPLE_DOCS", "Source contains multiple documents"));
      break;
    }
  }
  // compose(…, forceDoc = true) always yields a document, even for an empty source.
  if (doc === undefined) throw new Error("the YAML composer returned no document");
  return { ok: true, doc };
}

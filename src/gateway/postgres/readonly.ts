/**
 * Statement analysis with Postgres' own parser (libpg-query, the server's grammar compiled to
 * WASM): split a Query into statements for records, and judge statements on a read-only
 * connection.
 *
 * Read-only is two layers. The upstream connection starts with default_transaction_read_only=on,
 * and Postgres itself then refuses INSERT/UPDATE/DELETE/DDL/NOTIFY/nextval… in every transaction.
 * What the server cannot stop is a client turning that off again, so this layer refuses, before
 * anything is sent upstream, whatever could: it admits only statement kinds it positively knows to
 * be read-only, and fails closed on everything else, including text it cannot parse.
 *  - SELECT/VALUES/TABLE, EXPLAIN, SHOW, cursors (DECLARE/FETCH/CLOSE/MOVE), PREPARE/EXECUTE/
 *    DEALLOCATE, LISTEN/UNLISTEN, COPY … TO STDOUT, DISCARD PLANS/SEQUENCES/TEMP, transaction
 *    control without READ WRITE, SET/RESET of a short list of harmless settings.
 *  - Every function call anywhere in an admitted statement must be a built-in on an allow-list
 *    (unqualified or pg_catalog.), because a user-defined function can run `set_config` or `SET`
 *    inside; set_config itself only with a constant name from the harmless list.
 *  - Refused: SET/RESET of default_transaction_read_only, transaction_read_only, role,
 *    session_authorization; SET ROLE; SET SESSION AUTHORIZATION; RESET ALL; DISCARD ALL; BEGIN/
 *    START/SET TRANSACTION/SET SESSION CHARACTERISTICS … READ WRITE; DO; CALL; anything else.
 * Operators are held to the standard names for the same reason.
 * What a parser cannot see (a user-defined overload of a standard operator, a type or a view whose function changes the
 * setting) is caught by a third layer in the relay: Postgres reports default_transaction_read_only
 * as a ParameterStatus whenever it changes, and the gateway closes the connection at once if it
 * ever reads "off". The strongest setup is still a database role that cannot write (docs/database.md).
 */
import { loadModule, parseSync } from "libpg-query";

export interface Statement {
  /** The statement's own text (from the Query), trimmed. */
  text: string;
  /** The parse tree's node kind, e.g. SelectStmt; "" when the text did not parse. */
  kind: string;
  /** COPY … FROM STDIN / TO STDOUT (for the record's method). */
  copy: boolean;
}

export interface Verdict {
  statements: Statement[];
  /** Why the text may not run on a read-only connection, or null when it may. */
  refusal: string | null;
  /** The parser's message when the text did not parse. */
  syntaxError?: string;
}

/** Settings a read-only client may SET or RESET: none of them can change who it is or whether it writes. */
const HARMLESS_SETTINGS = new Set([
  "application_name", "client_encoding", "datestyle", "intervalstyle", "timezone", "extra_float_digits",
  "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout",
  "client_min_messages", "bytea_output", "search_path", "work_mem", "jit", "enable_seqscan", "enable_indexscan",
  "enable_bitmapscan", "enable_hashjoin", "enable_mergejoin", "enable_nestloop", "random_page_cost",
  "standard_conforming_strings", "escape_string_warning", "xmloption", "row_security", "plan_cache_mode",
  "max_parallel_workers_per_gather", "default_transaction_isolation", "transaction_isolation", "lc_messages",
  "lc_monetary", "lc_numeric", "lc_time", "geqo", "cursor_tuple_fraction", "gin_fuzzy_search_limit",
]);

/** Built-in functions that only compute and read: the ones a read-only statement may call. */
const READ_ONLY_FUNCTIONS = new Set(
  `abs ceil ceiling floor round trunc sign sqrt cbrt power pow exp ln log log10 mod div pi random degrees radians
  sin cos tan asin acos atan atan2 greatest least width_bucket gcd lcm factorial scale
  count sum avg min max bool_and bool_or every array_agg string_agg json_agg jsonb_agg json_object_agg
  jsonb_object_agg stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp
  percentile_cont percentile_disc mode rank dense_rank row_number ntile lag lead first_value last_value nth_value
  percent_rank cume_dist bit_and bit_or xmlagg
  length char_length character_length octet_length bit_length lower upper initcap trim btrim ltrim rtrim lpad rpad
  substr substring position strpos replace translate concat concat_ws format left right reverse repeat split_part
  regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_split_to_table regexp_count regexp_like
  starts_with md5 sha224 sha256 sha384 sha512 encode decode to_hex ascii chr quote_ident quote_literal
  quote_nullable string_to_array array_to_string unnest array_length array_lower array_upper cardinality
  array_position array_positions array_append array_prepend array_cat array_remove array_replace array_dims
  to_char to_date to_timestamp to_number now statement_timestamp transaction_timestamp clock_timestamp timeofday
  date_part date_trunc date_bin extract age make_date make_time make_timestamp make_timestamptz make_interval
  justify_days justify_hours justify_interval isfinite timezone
  generate_series generate_subscripts
  coalesce nullif
  json_build_object json_build_array jsonb_build_object jsonb_build_array to_json to_jsonb row_to_json
  array_to_json json_array_length jsonb_array_length json_each jsonb_each json_each_text jsonb_each_text
  json_extract_path jsonb_extract_path json_extract_path_text jsonb_extract_path_text json_object_keys
  jsonb_object_keys json_array_elements jsonb_array_elements json_array_elements_text jsonb_array_elements_text
  json_typeof jsonb_typeof jsonb_set jsonb_insert jsonb_pretty jsonb_strip_nulls json_strip_nulls jsonb_path_query
  jsonb_path_exists jsonb_path_match jsonb_path_query_array jsonb_path_query_first json_populate_record
  jsonb_populate_record json_to_record jsonb_to_record json_to_recordset jsonb_to_recordset
  version current_database current_schema current_schemas current_user session_user current_setting
  current_catalog user inet_client_addr inet_server_addr inet_server_port pg_backend_pid
  pg_postmaster_start_time pg_conf_load_time pg_is_in_recovery pg_sleep pg_sleep_for pg_sleep_until
  pg_typeof format_type pg_get_viewdef pg_get_functiondef pg_get_indexdef pg_get_constraintdef
  pg_get_expr pg_get_userbyid pg_get_serial_sequence pg_table_is_visible pg_type_is_visible
  pg_function_is_visible obj_description col_description shobj_description has_table_privilege
  has_schema_privilege has_database_privilege has_column_privilege has_function_privilege
  has_sequence_privilege pg_has_role pg_relation_size pg_total_relation_size pg_table_size pg_indexes_size
  pg_database_size pg_size_pretty pg_column_size pg_encoding_to_char pg_char_to_encoding
  txid_current_snapshot pg_current_snapshot pg_snapshot_xmin pg_snapshot_xmax
  pg_client_encoding to_regclass to_regtype to_regproc to_regnamespace array_fill
  uuid_in gen_random_uuid num_nonnulls num_nulls row`.split(/\s+/),
);

/** Names whose SET/RESET (or set_config) is an escape, for a precise message. */
const PROTECTED = new Set(["default_transaction_read_only", "transaction_read_only", "role", "session_authorization", "transaction_deferrable"]);

let ready: Promise<void> | null = null;
/** Load the WASM parser once per process; call before `analyse`. */
export function loadParser(): Promise<void> {
  ready ??= loadModule();
  return ready;
}

type Node = Record<string, unknown>;

/** Split and (when `readOnly`) judge `sql`. Cached by the caller; pure. */
export function analyse(sql: string, readOnly: boolean): Verdict {
  let tree: { stmts?: { stmt?: Node; stmt_location?: number; stmt_len?: number }[] };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return {
      statements: [{ text: sql.trim(), kind: "", copy: false }],
      refusal: readOnly ? "the statement could not be parsed, and a read-only connection runs only statements it can check" : null,
      syntaxError: message,
    };
  }
  const bytes = Buffer.from(sql);
  const statements: Statement[] = [];
  let refusal: string | null = null;
  for (const raw of tree.stmts ?? []) {
    const start = raw.stmt_location ?? 0;
    const end = raw.stmt_len ? start + raw.stmt_len : bytes.length;
    const text = bytes.toString("utf8", start, end).trim();
    const [kind, node] = Object.entries(raw.stmt ?? {})[0] ?? ["", {}];
    const copy = kind === "CopyStmt";
    statements.push({ text, kind, copy });
    if (readOnly && refusal === null) refusal = judge(kind, node as Node);
  }
  return { statements, refusal };
}

/** Why a statement of `kind` may not run read-only, or null. */
function judge(kind: string, node: Node): string | null {
  switch (kind) {
    case "SelectStmt":
      if (node["intoClause"]) return "SELECT INTO creates a table";
      return functionsIn(node);
    case "ExplainStmt":
    case "DeclareCursorStmt":
    case "PrepareStmt": {
      const inner = node["query"] as Node | undefined;
      const [innerKind, innerNode] = Object.entries(inner ?? {})[0] ?? ["", {}];
      return judge(innerKind, innerNode as Node);
    }
    case "VariableShowStmt":
    case "FetchStmt":
    case "ClosePortalStmt":
    case "ExecuteStmt":
    case "DeallocateStmt":
    case "ListenStmt":
    case "UnlistenStmt":
      return functionsIn(node);
    case "DiscardStmt":
      return node["target"] === "DISCARD_ALL" ? "DISCARD ALL resets every setting, including read-only" : null;
    case "CopyStmt":
      if (node["is_from"]) return "COPY FROM writes";
      if (node["filename"] || node["is_program"]) return "COPY to a server file or program";
      if (node["query"]) {
        const [innerKind, innerNode] = Object.entries(node["query"] as Node)[0] ?? ["", {}];
        return judge(innerKind, innerNode as Node);
      }
      return null;
    case "TransactionStmt":
      if (node["kind"] === "TRANS_STMT_PREPARE" || node["kind"] === "TRANS_STMT_COMMIT_PREPARED" || node["kind"] === "TRANS_STMT_ROLLBACK_PREPARED") return "two-phase commit";
      return readWriteOption(node["options"]);
    case "VariableSetStmt":
      return judgeSet(node);
    case "DoStmt":
      return "DO runs code the gateway cannot check";
    case "CallStmt":
      return "CALL runs a procedure the gateway cannot check";
    default:
      return `${kind ? kind.replace(/Stmt$/, "") : "this"} statements cannot run on a read-only connection`;
  }
}

function judgeSet(node: Node): string | null {
  const name = String(node["name"] ?? "").toLowerCase();
  switch (node["kind"]) {
    case "VAR_RESET_ALL":
      return "RESET ALL would reset default_transaction_read_only";
    case "VAR_SET_MULTI":
      // SET TRANSACTION … / SET SESSION CHARACTERISTICS AS TRANSACTION …
      return readWriteOption(node["args"]);
    default:
      if (PROTECTED.has(name)) return `changing ${name} is not allowed on a read-only connection`;
      if (!HARMLESS_SETTINGS.has(name)) return `SET ${name} is not on the list of settings a read-only connection may change`;
      if (name === "search_path" && JSON.stringify(node["args"] ?? []).toLowerCase().includes("pg_catalog")) {
        return "search_path may not name pg_catalog (built-ins must resolve first)";
      }
      return functionsIn(node);
  }
}

/** `READ WRITE` among transaction options (transaction_read_only = 0) is an escape. */
function readWriteOption(options: unknown): string | null {
  for (const opt of (options as Node[] | undefined) ?? []) {
    const def = opt["DefElem"] as Node | undefined;
    if (def?.["defname"] !== "transaction_read_only") continue;
    const ival = ((def["arg"] as Node | undefined)?.["A_Const"] as Node | undefined)?.["ival"] as Node | undefined;
    if (!ival || !ival["ival"]) return "READ WRITE transactions are not allowed on a read-only connection";
  }
  return null;
}

/** Every FuncCall under `node` must be an allowed built-in; set_config only with a constant harmless name. */
function functionsIn(node: unknown): string | null {
  const stack: unknown[] = [node];
  while (stack.length > 0) {
    const n = stack.pop();
    if (Array.isArray(n)) {
      stack.push(...n);
      continue;
    }
    if (!n || typeof n !== "object") continue;
    for (const [key, value] of Object.entries(n as Node)) {
      if (key === "FuncCall") {
        const why = judgeCall(value as Node);
        if (why) return why;
      }
      if (key === "A_Expr") {
        const why = judgeOperator(value as Node);
        if (why) return why;
      }
      // A data-modifying statement nested in a read (WITH x AS (INSERT …) SELECT …).
      if (key.endsWith("Stmt") && key !== "SelectStmt") return `${key} inside a query is not allowed on a read-only connection`;
      if (value && typeof value === "object") stack.push(value);
    }
  }
  return null;
}

/**
 * Operators run functions too: only the standard operator names, unqualified or pg_catalog. A
 * user-defined overload of a standard name on user types is the residue a parser cannot see
 * (ParameterStatus backstop, docs).
 */
const STANDARD_OPERATORS = new Set(
  "= <> != < > <= >= + - * / % ^ |/ ||/ @ & | # ~ << >> || ~~ ~~* !~~ !~~* ~* !~ !~* && @> <@ -> ->> #> #>> ? ?| ?& @? @@ @@@ <-> && &< &> -|- ### ?# ?- ?| ?-| ?|| #- <^ >^ ^@".split(" "),
);

function judgeOperator(expr: Node): string | null {
  const parts = ((expr["name"] as Node[] | undefined) ?? []).map((p) => String((p["String"] as Node | undefined)?.["sval"] ?? ""));
  if (parts.length === 0) return null;
  const name = parts[parts.length - 1]!;
  const schema = parts.length > 1 ? parts[0] : "pg_catalog";
  if (schema !== "pg_catalog" || !STANDARD_OPERATORS.has(name)) return `operator ${parts.join(".")} is not a standard operator`;
  return null;
}

function judgeCall(call: Node): string | null {
  const parts = ((call["funcname"] as Node[] | undefined) ?? []).map((p) => String((p["String"] as Node | undefined)?.["sval"] ?? "").toLowerCase());
  const name = parts[parts.length - 1] ?? "";
  const schema = parts.length > 1 ? parts[0] : "pg_catalog";
  if (parts.length > 2 || schema !== "pg_catalog") return `${parts.join(".")}() is not a built-in the gateway knows to be read-only`;
  if (name === "set_config") {
    const first = ((call["args"] as Node[] | undefined) ?? [])[0];
    const constant = ((first?.["A_Const"] as Node | undefined)?.["sval"] as Node | undefined)?.["sval"];
    if (typeof constant !== "string") return "set_config() with a name that is not a constant";
    if (PROTECTED.has(constant.toLowerCase()) || !HARMLESS_SETTINGS.has(constant.toLowerCase())) return `set_config('${constant}', …) is not allowed on a read-only connection`;
    return null;
  }
  return READ_ONLY_FUNCTIONS.has(name) ? null : `${name}() is not a built-in the gateway knows to be read-only`;
}

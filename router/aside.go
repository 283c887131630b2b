package router

import pg "github.com/pganalyze/pg_query_go/v6"

// Inside BEGIN the proxy defers the transaction's start until a statement
// names a shard, so that the transaction lands on the shard its first
// keyed statement needs. A statement that reads no table before then
// (SELECT 1, SHOW TimeZone, SELECT current_setting(...)) may run beside
// the transaction, on a backend borrowed for it, instead of pinning the
// transaction to the default shard, but only if it leaves nothing the
// transaction would have to keep or undo: a DO block, a CALL, NOTIFY, a
// user function (which may write), nextval() or SELECT ... INTO run beside
// it would commit on their own, even if the client then rolls back.
// Statement.Aside marks the statements that may: a SELECT or SHOW that
// reads no table, creates nothing, and calls only the built-in functions
// below, which neither write nor act on the session or the transaction.
// Anything else runs in the transaction, on the default shard when no
// other holds it yet.

// asideCalls are the built-in functions a statement run beside a
// transaction may call. Leaving one out costs only the pin.
var asideCalls = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range []string{
		// settings and facts of the server and session
		"current_setting", "version", "current_database", "current_schema", "current_schemas",
		"pg_is_in_recovery", "pg_client_encoding", "pg_encoding_to_char", "pg_char_to_encoding",
		"has_table_privilege", "has_schema_privilege", "has_database_privilege", "has_function_privilege",
		"has_column_privilege", "has_sequence_privilege", "has_any_column_privilege", "pg_has_role",
		"pg_get_userbyid", "format_type", "pg_typeof", "to_regclass", "to_regtype", "to_regproc",
		"to_regprocedure", "to_regnamespace", "to_regrole", "obj_description", "col_description",
		"shobj_description", "pg_get_expr", "pg_get_constraintdef", "pg_get_indexdef", "pg_get_viewdef",
		"pg_get_functiondef", "pg_get_function_arguments", "pg_get_function_result", "pg_get_triggerdef",
		"pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible", "quote_ident",
		"quote_literal", "quote_nullable", "pg_size_pretty", "pg_column_size",
		// time
		"now", "statement_timestamp", "clock_timestamp", "transaction_timestamp", "timeofday",
		"date_trunc", "date_part", "extract", "date_bin", "age", "make_date", "make_time",
		"make_timestamp", "make_timestamptz", "make_interval", "justify_days", "justify_hours",
		"justify_interval", "to_char", "to_date", "to_timestamp", "to_number", "isfinite", "timezone",
		// numbers
		"abs", "ceil", "ceiling", "floor", "round", "trunc", "mod", "div", "power", "pow", "sqrt", "cbrt",
		"exp", "ln", "log", "log10", "sign", "pi", "degrees", "radians", "sin", "cos", "tan", "asin",
		"acos", "atan", "atan2", "width_bucket", "gcd", "lcm", "factorial", "scale", "random",
		"gen_random_uuid", "numeric", "int4", "int8", "float8", "text",
		// strings and bytes
		"lower", "upper", "initcap", "length", "char_length", "character_length", "octet_length",
		"bit_length", "substr", "substring", "btrim", "ltrim", "rtrim", "trim", "replace", "translate",
		"concat", "concat_ws", "format", "left", "right", "lpad", "rpad", "repeat", "reverse",
		"split_part", "strpos", "position", "starts_with", "md5", "sha224", "sha256", "sha384", "sha512",
		"encode", "decode", "to_hex", "ascii", "chr", "regexp_replace", "regexp_match", "regexp_matches",
		"regexp_split_to_array", "regexp_split_to_table", "string_to_array", "array_to_string",
		"convert_from", "convert_to", "overlay", "normalize", "unistr",
		// arrays, ranges, JSON
		"array_length", "array_lower", "array_upper", "array_ndims", "array_dims", "cardinality",
		"array_append", "array_prepend", "array_cat", "array_remove", "array_replace",
		"array_position", "array_positions", "unnest", "generate_series", "generate_subscripts",
		"lower_inc", "upper_inc", "isempty", "int4range", "int8range", "numrange", "tsrange",
		"tstzrange", "daterange", "json_build_object", "jsonb_build_object", "json_build_array",
		"jsonb_build_array", "to_json", "to_jsonb", "row_to_json", "array_to_json", "jsonb_pretty",
		"json_typeof", "jsonb_typeof", "jsonb_set", "jsonb_insert", "jsonb_strip_nulls",
		"json_object", "jsonb_object", "jsonb_path_query", "jsonb_path_exists", "json_extract_path",
		"jsonb_extract_path", "json_extract_path_text", "jsonb_extract_path_text",
		// aggregates over a table-less FROM
		"count", "sum", "min", "max", "avg", "bool_and", "bool_or", "every", "array_agg",
		"string_agg", "json_agg", "jsonb_agg",
		// set_config(..., true): the proxy replays it where the
		// transaction lands (set_config(..., false) is a session
		// setting, never aside: see analyze).
		"set_config",
	} {
		m[f] = true
	}
	return m
}()

// runsAside reports whether n, a statement that reads no table, may run
// beside a transaction (Statement.Aside).
func runsAside(n *pg.Node) bool {
	switch x := n.Node.(type) {
	case *pg.Node_VariableShowStmt:
		return true
	case *pg.Node_SelectStmt:
		if x.SelectStmt.IntoClause != nil || len(x.SelectStmt.LockingClause) > 0 {
			return false
		}
	default:
		return false
	}
	ok := true
	walk(n, func(c *pg.Node) bool {
		switch {
		case !ok:
		case c.GetFuncCall() != nil:
			f := c.GetFuncCall()
			names := stringItems(f.Funcname)
			ok = asideCalls[funcName(f)] && (len(names) == 1 || names[0] == "pg_catalog")
		case c.GetSelectStmt() != nil:
			if s := c.GetSelectStmt(); s.IntoClause != nil || len(s.LockingClause) > 0 {
				ok = false
			}
		}
		return ok
	})
	return ok
}

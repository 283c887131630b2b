// Package config turns a YAML shard map into typed, validated values.
//
// A *Config is immutable once Load returns it: reload builds a new value and
// swaps it in (see Watch), so readers never observe a half-applied map.
// Validation errors carry the file and line of the offending YAML node; a
// map with several problems reports all of them (*ValidationError).
//
// Values are resolved so that consumers need no YAML knowledge:
//   - Strategy.KeyType is canonical (KeyInt, KeyText, KeyUUID, KeyTimestamp,
//     KeyTimestampTZ), defaulted (int for hash/consistent, inferred for
//     range, the fallback's for directory).
//   - Range.Upper is canonical per KeyType: decimal for int, RFC 3339 with
//     nanoseconds in UTC for timestamptz (time.RFC3339Nano; a bound written
//     without an offset is UTC), the same without the zone for timestamp (a
//     wall clock; a bound with an offset is an error), lower-case
//     hyphenated for uuid, as written for text. Bounds ascend strictly.
//   - Table.Name and Table.Key are folded like SQL identifiers (lower case
//     unless double-quoted in the YAML string; quotes removed).
//   - TLS file names are relative to the config file's directory.
package config

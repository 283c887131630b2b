// Package resharding moves rows from one shard map to another while the
// application keeps writing through the proxies.
//
// A job goes through phases, each persisted in the metadata database so
// that a killed job resumes where it stopped (see state.go):
//
//	copy     per source shard: a publication and a pgoutput logical slot
//	         created with an exported snapshot; the rows whose owner
//	         changes are copied under that snapshot: one COPY per
//	         destination filtered in SQL (ownerSQL) and piped straight into
//	         COPY FROM there on a first copy; upserted in batches when the
//	         destination already has some (a redone copy) or the strategy
//	         has no SQL form (filtered in Go)
//	catchup  the slot is streamed; changes of moving keys are applied on the
//	         new owner idempotently (upsert / delete by primary key). Once
//	         the lag is small, source and destination are verified while
//	         writes go on (verify.go: count and checksum per table and
//	         move, each source at the position of a snapshot exported by a
//	         temporary slot, the destinations with the streams held there;
//	         Options.SkipVerify leaves it out). A difference stops the job
//	         before its cutover, with the old map serving.
//	cutover  every proxy pauses the source shards (LISTEN/NOTIFY, acked),
//	         the slots are drained to the sources' current WAL position,
//	         the new map is written as a new epoch (with the directory
//	         entries moved), the proxies switch and ack, the streams stop,
//	         the moved rows are deleted from their old owners, every shard
//	         at once (still paused, the pause renewed for as long as that
//	         takes, so no read sees a row twice), and the proxies resume. A
//	         bound exceeded before the epoch resumes on the old map and the
//	         job goes back to catchup. A job that stops between the switch
//	         and the end of the deletion leaves its sources fenced by the
//	         proxies (statements there fail with 55000) until cleanup.
//	cleanup  slots and publications dropped, moved rows still on old owners
//	         (a job killed inside the cutover) deleted, the fence lifted
//
// What moves is a placement (placement.go): for tables whose strategy
// changes, the keys whose owner differs between the two strategies; for a
// directory strategy, the keys the operator moves (DirectoryMove), whose
// entries change in the switch's transaction. Every phase asks the
// placement, so copy, stream, verification, delete and abort agree.
//
// Reference tables, when the target map adds shards, are copied whole
// from the first source shard (under the same snapshot, through the same
// slot and publication) onto every new shard, their changes applied there
// like moved rows, and verified at the cutover (count and checksum of the
// whole table). The proxies write reference tables to every shard of the
// map they serve, so until the switch the source has every write.
//
// Why replay converges: a row is only ever copied while its source's slot
// exists, so whatever snapshot the copy saw is at or after the slot's start,
// and replaying every later change (full new tuples for insert/update, the
// key for delete) as upserts and deletes by primary key ends in the source's
// state, however often a prefix of the stream is replayed. That is what makes
// each phase safe to redo after SIGKILL.
package resharding

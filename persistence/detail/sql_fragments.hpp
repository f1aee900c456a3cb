// SQL fragments the store's statements are built from (macros, so that a
// statement stays one string literal).
#pragma once

// SQL fragments converting between timestamptz and integer microseconds
// since the epoch, exactly (a double would lose the last digit).
#define TS_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

// A payload whose stored size is at most this is copied into the message
// that receives it; a larger one is not stored again but assembled when the
// message is claimed (turing.message_payload, migration 14). Below the TOAST
// threshold a copy costs less than the lookups that would replace it.
#define STORED_INLINE(size) "(" size " <= 2000)"

// A batch of results reaches SQL as one JSON object keyed by message (or
// item) id, and each row updated looks its entry up by key: no join. Joined
// as a jsonb_to_recordset to the rows (found by id = ANY), the batch was
// planned as a nested loop rescanning it per row, O(n²): 25 ms for a
// completion of 192 rows, 3 ms for 64. A message's entry holds the epoch
// that fences it.
#define MESSAGE_ENTRY "($1::jsonb -> m.id::text)"
#define ITEM_ENTRY "($1::jsonb -> i.id::text)"
// A field of an entry as text (cast it as needed); a jsonb field, where a
// JSON null reads as SQL NULL, as jsonb_to_recordset read it.
#define ENTRY_TEXT(entry, field) "(" entry " ->> '" field "')"
#define JSONB_FIELD(entry, field) "nullif(" entry " -> '" field "', 'null'::jsonb)"

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

// A batch of results reaches SQL as parallel typed arrays, one element per
// row in ascending id order, unnested and joined to the rows through the
// primary key: each row reads its fields from its own tuple, and rows are
// locked in the arrays' order. (Looking each entry up by key in one JSON
// object cost about 0.3 µs per field per row, about 3 µs per completed
// message. A jsonb_to_recordset joined to rows found by `id = ANY` was
// planned as a nested loop rescanning the recordset per row, O(n²): 25 ms
// for a completion of 192 rows.)

-- Oracle through ODBC (`database.dialect = "oracle"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"): RAW for byte strings, BLOB for large ones; not yet run on an Oracle
-- server. No IF NOT EXISTS: `qianzhi migrate` records every version.
-- Migration 10: qz_row_state for mode = "incremental" and mode = "snapshot" (README, 采集方式).
-- key_sort: the source key as bytes that sort like the snapshot read of the view (integers by
--   value, text by its UTF-8 bytes), so the snapshot merge-joins the view and this table in one
--   order without holding either in memory.
-- record:   snapshot mode, the last record delivered for the key (JSON), kept so that a key
--   gone from the view can be sent as a delete with the fields the platform requires.
ALTER TABLE qz_row_state ADD (key_sort RAW(1024));
ALTER TABLE qz_row_state ADD (record BLOB);
CREATE INDEX qz_row_state_sort ON qz_row_state (job, key_sort);

-- Migration 10: qz_row_state for mode = "incremental" and mode = "snapshot" (README, 采集方式).
-- source_key becomes binary-collated: under the default utf8mb4 collation 'a' and 'A' (and
--   'a' and 'a ') would be one key, and two source rows would share one state.
-- key_sort: the source key as bytes that sort like the snapshot read of the view (integers by
--   value, text by its UTF-8 bytes), so the snapshot merge-joins the view and this table in one
--   order without holding either in memory.
-- record:   snapshot mode, the last record delivered for the key (JSON), kept so that a key
--   gone from the view can be sent as a delete with the fields the platform requires.
ALTER TABLE qz_row_state MODIFY source_key VARCHAR(500) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE qz_row_state ADD COLUMN key_sort VARBINARY(1024) NULL;
ALTER TABLE qz_row_state ADD COLUMN record MEDIUMBLOB NULL;
CREATE INDEX qz_row_state_sort ON qz_row_state (job, key_sort);

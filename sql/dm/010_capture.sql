-- DM (达梦) through ODBC (`database.dialect = "dm"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"); not yet run on a DM server. The incremental and snapshot modes are
-- not yet supported on ODBC sources; the columns are added so the schema versions agree.
-- Migration 10: qz_row_state for mode = "incremental" and mode = "snapshot" (README, 采集方式).
-- key_sort: the source key as bytes that sort like the snapshot read of the view.
-- record:   snapshot mode, the last record delivered for the key (JSON).
ALTER TABLE qz_row_state ADD key_sort VARBINARY(1024);
ALTER TABLE qz_row_state ADD record BLOB;
CREATE INDEX qz_row_state_sort ON qz_row_state (job, key_sort);

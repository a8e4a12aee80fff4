-- Migration 4: compress outbox bodies with lz4 (PostgreSQL 14+ built with lz4, as Debian's,
-- Ubuntu's and the PGDG packages are).
-- A call body is about 150 KB of JSON with the same keys in every record. Stored uncompressed
-- (STORAGE EXTERNAL, migration 1) it costs about 75 TOAST rows and their WAL per call; lz4
-- shrinks it several times over for little CPU, which measurably raised end-to-end throughput
-- (see README, benchmark). pglz, the default method, is too slow to be worth it here.
--
-- qianzhi: optional
-- Where lz4 is not available the first statement fails, qianzhi logs a warning and keeps the
-- uncompressed storage; nothing else depends on this migration.
ALTER TABLE qz_outbox ALTER COLUMN body SET COMPRESSION lz4;
ALTER TABLE qz_outbox ALTER COLUMN records SET COMPRESSION lz4;
ALTER TABLE qz_outbox ALTER COLUMN body SET STORAGE EXTENDED;
ALTER TABLE qz_outbox ALTER COLUMN records SET STORAGE EXTENDED;

-- Migration 6: the order of exchanges within a job, so an error row is resolved only by the
-- delivery of a LATER version of the same source row. Every committed page (an exchange, with
-- or without a batch) takes the next number of its job (qz_cursor.exchange_no); its batch and
-- its error rows keep that number. A batch resolves the open error rows of exchanges before
-- its own; rows written before this migration (NULL) count as older than every new exchange.
ALTER TABLE qz_cursor ADD COLUMN exchange_no BIGINT NOT NULL DEFAULT 0;
ALTER TABLE qz_batch ADD COLUMN exchange_no BIGINT;
ALTER TABLE qz_error ADD COLUMN exchange_no BIGINT;

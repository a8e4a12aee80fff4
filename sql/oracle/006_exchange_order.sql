-- Oracle through ODBC (`database.dialect = "oracle"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"): VARCHAR2(n CHAR), NUMBER(19), CLOB, identity columns (12c); not yet
-- run on an Oracle server. No IF NOT EXISTS: `qianzhi migrate` records every version.
-- Migration 6: the order of exchanges within a job, so an error row is resolved only by the
-- delivery of a LATER version of the same source row. Every committed page (an exchange, with
-- or without a batch) takes the next number of its job (qz_cursor.exchange_no); its batch and
-- its error rows keep that number. A batch resolves the open error rows of exchanges before
-- its own; rows written before this migration (NULL) count as older than every new exchange.
ALTER TABLE qz_cursor ADD (exchange_no NUMBER(19) DEFAULT 0 NOT NULL);
ALTER TABLE qz_batch ADD (exchange_no NUMBER(19));
ALTER TABLE qz_error ADD (exchange_no NUMBER(19));

-- Oracle through ODBC (`database.dialect = "oracle"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"): VARCHAR2(n CHAR), NUMBER(19), CLOB, identity columns (12c); not yet
-- run on an Oracle server. No IF NOT EXISTS: `qianzhi migrate` records every version.
-- Migration 9: what `qianzhi status` (from any process) and /metrics say about a job's runs.
-- last_run_result: ok, failed or interrupted (SIGTERM or Ctrl-C before the work was done; not a
-- success, so last_success_at is left as it was).
-- retrying_*: while a run's calls fail temporarily (network, timeout, 5xx) and are being resent:
-- since when (Beijing time), the latest failure, how many in a row, and the whole masked error
-- chain of the latest one. Cleared when the platform answers again or the run ends.
ALTER TABLE qz_cursor ADD (last_run_result VARCHAR2(12 CHAR));
ALTER TABLE qz_cursor ADD (retrying_since VARCHAR2(19 CHAR));
ALTER TABLE qz_cursor ADD (retry_last_at VARCHAR2(19 CHAR));
ALTER TABLE qz_cursor ADD (retry_failures NUMBER(19));
ALTER TABLE qz_cursor ADD (retry_error CLOB);

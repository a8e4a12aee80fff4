-- Migration 9: what `qianzhi status` (from any process) and /metrics say about a job's runs.
-- last_run_result: ok, failed or interrupted (SIGTERM or Ctrl-C before the work was done; not a
-- success, so last_success_at is left as it was).
-- retrying_*: while a run's calls fail temporarily (network, timeout, 5xx) and are being resent:
-- since when (Beijing time), the latest failure, how many in a row, and the whole masked error
-- chain of the latest one. Cleared when the platform answers again or the run ends.
ALTER TABLE qz_cursor ADD COLUMN IF NOT EXISTS last_run_result VARCHAR(12);
ALTER TABLE qz_cursor ADD COLUMN IF NOT EXISTS retrying_since VARCHAR(19);
ALTER TABLE qz_cursor ADD COLUMN IF NOT EXISTS retry_last_at VARCHAR(19);
ALTER TABLE qz_cursor ADD COLUMN IF NOT EXISTS retry_failures BIGINT;
ALTER TABLE qz_cursor ADD COLUMN IF NOT EXISTS retry_error TEXT;

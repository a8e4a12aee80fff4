-- qianzhi control tables, PostgreSQL (also Kingbase, openGauss, GaussDB). Applied by `qianzhi migrate`; safe to read before running.
-- Times are Beijing time as text 'yyyy-MM-dd HH:mm:ss' so they read the same on every backend.

-- Where each job has read its source up to (JSON: change time and key of the last row).
CREATE TABLE IF NOT EXISTS qz_cursor (
  job             VARCHAR(100) PRIMARY KEY,
  position        TEXT,
  last_run_at     VARCHAR(19),
  last_success_at VARCHAR(19),
  last_error      TEXT,
  updated_at      VARCHAR(19)
);

-- Daily Cd_Batch sequence per reporting unit: allocated in a transaction, never reused.
CREATE TABLE IF NOT EXISTS qz_batch_seq (
  unit_code  VARCHAR(18) NOT NULL,
  batch_date VARCHAR(8)  NOT NULL,
  last_seq   BIGINT      NOT NULL,
  PRIMARY KEY (unit_code, batch_date)
);

-- One row per exchange (Cd_Batch). state: pending until every record is acked or refused.
CREATE TABLE IF NOT EXISTS qz_batch (
  cd_batch           VARCHAR(50) PRIMARY KEY,
  job                VARCHAR(100) NOT NULL,
  upstream           VARCHAR(20)  NOT NULL,
  data_type          VARCHAR(50)  NOT NULL,
  table_name         VARCHAR(64),
  state              VARCHAR(10)  NOT NULL,
  record_count       BIGINT       NOT NULL,
  delivered_count    BIGINT       NOT NULL DEFAULT 0,
  rejected_count     BIGINT       NOT NULL DEFAULT 0,
  cd_time            VARCHAR(19)  NOT NULL,
  created_at         VARCHAR(19)  NOT NULL,
  done_at            VARCHAR(19),
  platform_batch_num VARCHAR(100),
  platform_id        VARCHAR(100)
);
CREATE INDEX IF NOT EXISTS qz_batch_job_state ON qz_batch (job, state);

-- One row per platform call of a pending batch: the exact body sent, replayed byte for byte
-- on resend. records: JSON [{source_key,row_guid,operation}] in body order. done: after the
-- platform refused a call and it was split, which records (by index) were acked (a) or refused (r).
CREATE TABLE IF NOT EXISTS qz_outbox (
  cd_batch     VARCHAR(50) NOT NULL,
  call_no      BIGINT      NOT NULL,
  record_count BIGINT      NOT NULL,
  body         TEXT        NOT NULL,
  records      TEXT        NOT NULL,
  done         TEXT,
  state        VARCHAR(10) NOT NULL,
  PRIMARY KEY (cd_batch, call_no)
);
-- Bodies are written once and read at most once more: compressing them costs more than it saves.
ALTER TABLE qz_outbox ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE qz_outbox ALTER COLUMN records SET STORAGE EXTERNAL;

-- Rows that were not sent (local validation) or that the platform refused.
CREATE TABLE IF NOT EXISTS qz_error (
  id          BIGSERIAL PRIMARY KEY,
  job         VARCHAR(100) NOT NULL,
  source_key  VARCHAR(500) NOT NULL,
  row_guid    VARCHAR(64),
  operation   VARCHAR(1),
  field       VARCHAR(100) NOT NULL,
  rule        VARCHAR(40)  NOT NULL,
  message     TEXT         NOT NULL,
  cd_batch    VARCHAR(50),
  created_at  VARCHAR(19)  NOT NULL,
  resolved_at VARCHAR(19),
  resolved_by VARCHAR(50)
);
CREATE INDEX IF NOT EXISTS qz_error_job_key ON qz_error (job, source_key);
CREATE INDEX IF NOT EXISTS qz_error_open ON qz_error (job, resolved_at);

-- 数据对账: one row per finished batch, and what the reconciliation upload answered.
CREATE TABLE IF NOT EXISTS qz_reconciliation (
  cd_batch           VARCHAR(50) PRIMARY KEY,
  job                VARCHAR(100) NOT NULL,
  table_name         VARCHAR(64)  NOT NULL,
  cd_count           BIGINT       NOT NULL,
  cd_time            VARCHAR(19)  NOT NULL,
  created_at         VARCHAR(19)  NOT NULL,
  upload_state       VARCHAR(10)  NOT NULL,
  upload_message     TEXT,
  uploaded_at        VARCHAR(19),
  platform_batch_num VARCHAR(100)
);
CREATE INDEX IF NOT EXISTS qz_reconciliation_upload ON qz_reconciliation (job, upload_state);

-- Last seen version of each source row (for the incremental and snapshot modes).
CREATE TABLE IF NOT EXISTS qz_row_state (
  job        VARCHAR(100) NOT NULL,
  source_key VARCHAR(500) NOT NULL,
  row_guid   VARCHAR(64)  NOT NULL,
  row_hash   VARCHAR(64)  NOT NULL,
  updated_at VARCHAR(19)  NOT NULL,
  PRIMARY KEY (job, source_key)
);

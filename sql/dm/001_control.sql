-- DM (达梦) through ODBC (`database.dialect = "dm"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"): VARCHAR2(n CHAR), BIGINT, CLOB, IDENTITY; not yet run on a DM server.
-- No IF NOT EXISTS: `qianzhi migrate` records every version in qz_schema_version.
-- qianzhi control tables, DM (达梦) 8. Applied by `qianzhi migrate`; safe to read before running.
-- Times are Beijing time as text 'yyyy-MM-dd HH:mm:ss' so they read the same on every backend.

-- Where each job has read its source up to (JSON: change time and key of the last row).
CREATE TABLE qz_cursor (
  job             VARCHAR2(100 CHAR) PRIMARY KEY,
  position        VARCHAR2(4000 CHAR),
  last_run_at     VARCHAR2(19 CHAR),
  last_success_at VARCHAR2(19 CHAR),
  last_error      CLOB,
  updated_at      VARCHAR2(19 CHAR)
);

-- Daily Cd_Batch sequence per reporting unit: allocated in a transaction, never reused.
CREATE TABLE qz_batch_seq (
  unit_code  VARCHAR2(18 CHAR) NOT NULL,
  batch_date VARCHAR2(8 CHAR)  NOT NULL,
  last_seq   BIGINT      NOT NULL,
  PRIMARY KEY (unit_code, batch_date)
);

-- One row per exchange (Cd_Batch). state: pending until every record is acked or refused.
CREATE TABLE qz_batch (
  cd_batch           VARCHAR2(50 CHAR) PRIMARY KEY,
  job                VARCHAR2(100 CHAR) NOT NULL,
  upstream           VARCHAR2(20 CHAR)  NOT NULL,
  data_type          VARCHAR2(50 CHAR)  NOT NULL,
  table_name         VARCHAR2(64 CHAR),
  state              VARCHAR2(10 CHAR)  NOT NULL,
  record_count       BIGINT       NOT NULL,
  delivered_count    BIGINT       DEFAULT 0 NOT NULL,
  rejected_count     BIGINT       DEFAULT 0 NOT NULL,
  cd_time            VARCHAR2(19 CHAR)  NOT NULL,
  created_at         VARCHAR2(19 CHAR)  NOT NULL,
  done_at            VARCHAR2(19 CHAR),
  platform_batch_num VARCHAR2(100 CHAR),
  platform_id        VARCHAR2(100 CHAR)
);
CREATE INDEX qz_batch_job_state ON qz_batch (job, state);

-- One row per platform call of a pending batch: the exact body sent, replayed byte for byte
-- on resend. records: JSON [{source_key,row_guid,operation}] in body order. done: after the
-- platform refused a call and it was split, which records (by index) were acked (a) or refused (r).
CREATE TABLE qz_outbox (
  cd_batch     VARCHAR2(50 CHAR) NOT NULL,
  call_no      BIGINT      NOT NULL,
  record_count BIGINT      NOT NULL,
  body         CLOB        NOT NULL,
  records      CLOB        NOT NULL,
  done         CLOB,
  state        VARCHAR2(10 CHAR) NOT NULL,
  PRIMARY KEY (cd_batch, call_no)
);
-- Bodies are written once and read at most once more: compressing them costs more than it saves.

-- Rows that were not sent (local validation) or that the platform refused.
CREATE TABLE qz_error (
  id          BIGINT IDENTITY(1, 1) PRIMARY KEY,
  job         VARCHAR2(100 CHAR) NOT NULL,
  source_key  VARCHAR2(500 CHAR) NOT NULL,
  row_guid    VARCHAR2(64 CHAR),
  operation   VARCHAR2(1 CHAR),
  field       VARCHAR2(100 CHAR) NOT NULL,
  rule        VARCHAR2(40 CHAR)  NOT NULL,
  message     CLOB         NOT NULL,
  cd_batch    VARCHAR2(50 CHAR),
  created_at  VARCHAR2(19 CHAR)  NOT NULL,
  resolved_at VARCHAR2(19 CHAR),
  resolved_by VARCHAR2(50 CHAR)
);
CREATE INDEX qz_error_job_key ON qz_error (job, source_key);
CREATE INDEX qz_error_open ON qz_error (job, resolved_at);

-- 数据对账: one row per finished batch, and what the reconciliation upload answered.
CREATE TABLE qz_reconciliation (
  cd_batch           VARCHAR2(50 CHAR) PRIMARY KEY,
  job                VARCHAR2(100 CHAR) NOT NULL,
  table_name         VARCHAR2(64 CHAR)  NOT NULL,
  cd_count           BIGINT       NOT NULL,
  cd_time            VARCHAR2(19 CHAR)  NOT NULL,
  created_at         VARCHAR2(19 CHAR)  NOT NULL,
  upload_state       VARCHAR2(10 CHAR)  NOT NULL,
  upload_message     CLOB,
  uploaded_at        VARCHAR2(19 CHAR),
  platform_batch_num VARCHAR2(100 CHAR)
);
CREATE INDEX qz_reconciliation_upload ON qz_reconciliation (job, upload_state);

-- Last seen version of each source row (for the incremental and snapshot modes).
CREATE TABLE qz_row_state (
  job        VARCHAR2(100 CHAR) NOT NULL,
  source_key VARCHAR2(500 CHAR) NOT NULL,
  row_guid   VARCHAR2(64 CHAR)  NOT NULL,
  row_hash   VARCHAR2(64 CHAR)  NOT NULL,
  updated_at VARCHAR2(19 CHAR)  NOT NULL,
  PRIMARY KEY (job, source_key)
);

-- DM (达梦) through ODBC (`database.dialect = "dm"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"): VARCHAR2(n CHAR), BIGINT, CLOB, IDENTITY; not yet run on a DM server.
-- No IF NOT EXISTS: `qianzhi migrate` records every version in qz_schema_version.
-- Migration 3: the platform's own receipt for every acknowledged call (Gansu answers each call
-- with data.batchNum and data.id). One batch of qianzhi (cd_batch) may take several calls;
-- qz_batch.platform_batch_num / platform_id and qz_reconciliation.platform_batch_num hold
-- them comma-joined in call order when the batch is done, hence TEXT.
CREATE TABLE qz_platform_receipt (
  id                 BIGINT IDENTITY(1, 1) PRIMARY KEY,
  cd_batch           VARCHAR2(50 CHAR)  NOT NULL,
  call_no            BIGINT       NOT NULL,
  record_count       BIGINT       NOT NULL,
  platform_batch_num VARCHAR2(100 CHAR),
  platform_id        VARCHAR2(100 CHAR),
  received_at        VARCHAR2(19 CHAR)  NOT NULL
);
CREATE INDEX qz_platform_receipt_batch ON qz_platform_receipt (cd_batch);
ALTER TABLE qz_batch MODIFY platform_batch_num VARCHAR2(4000 CHAR);
ALTER TABLE qz_batch MODIFY platform_id VARCHAR2(4000 CHAR);
ALTER TABLE qz_reconciliation MODIFY platform_batch_num VARCHAR2(4000 CHAR);

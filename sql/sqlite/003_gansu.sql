-- Migration 3: the platform's own receipt for every acknowledged call (Gansu answers each call
-- with data.batchNum and data.id). One batch of qianzhi (cd_batch) may take several calls;
-- qz_batch.platform_batch_num / platform_id and qz_reconciliation.platform_batch_num hold
-- them comma-joined in call order when the batch is done. SQLite does not enforce VARCHAR
-- lengths, so those columns need no widening here.
CREATE TABLE IF NOT EXISTS qz_platform_receipt (
  id                 INTEGER PRIMARY KEY AUTOINCREMENT,
  cd_batch           VARCHAR(50)  NOT NULL,
  call_no            BIGINT       NOT NULL,
  record_count       BIGINT       NOT NULL,
  platform_batch_num VARCHAR(100),
  platform_id        VARCHAR(100),
  received_at        VARCHAR(19)  NOT NULL
);
CREATE INDEX IF NOT EXISTS qz_platform_receipt_batch ON qz_platform_receipt (cd_batch);

-- DM (达梦) through ODBC (`database.dialect = "dm"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"): VARCHAR2(n CHAR), BIGINT, CLOB, IDENTITY; not yet run on a DM server.
-- No IF NOT EXISTS: `qianzhi migrate` records every version in qz_schema_version.
-- Migration 5: pages of a paged credit query (Shuidi, Qichacha) bought so far, PostgreSQL.
-- A subject with more pages than the day's budget leaves here what it bought; the next run
-- (the next Beijing day, when the budget is spent) continues from the following page, and the
-- subject's result is stored from all its pages once the last one is read. Each page is written
-- in the same transaction as its ledger row's answer, and deleted in the same transaction that
-- stores the result, so a crash never loses a page that was paid for.
CREATE TABLE qz_query_page (
  provider    VARCHAR2(20 CHAR)  NOT NULL,
  subject_key VARCHAR2(200 CHAR) NOT NULL,
  page        BIGINT       NOT NULL,   -- pageIndex, from 1
  job         VARCHAR2(100 CHAR) NOT NULL,
  search_key  VARCHAR2(500 CHAR) NOT NULL,   -- keyword / searchKey sent: other pages must match it
  page_size   BIGINT       NOT NULL,   -- pageSize sent: other pages must match it
  total       BIGINT,                  -- TotalRecords of this answer
  calls       BIGINT       NOT NULL,   -- calls spent on this page, retries included
  status_code VARCHAR2(20 CHAR)  NOT NULL,
  order_no    VARCHAR2(100 CHAR),
  items_json  CLOB         NOT NULL,   -- the page's records as received (a JSON array)
  fetched_at  VARCHAR2(19 CHAR)  NOT NULL,
  PRIMARY KEY (provider, subject_key, page)
);

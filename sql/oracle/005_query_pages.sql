-- Oracle through ODBC (`database.dialect = "oracle"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"): VARCHAR2(n CHAR), NUMBER(19), CLOB, identity columns (12c); not yet
-- run on an Oracle server. No IF NOT EXISTS: `qianzhi migrate` records every version.
-- Migration 5: pages of a paged credit query (Shuidi, Qichacha) bought so far, PostgreSQL.
-- A subject with more pages than the day's budget leaves here what it bought; the next run
-- (the next Beijing day, when the budget is spent) continues from the following page, and the
-- subject's result is stored from all its pages once the last one is read. Each page is written
-- in the same transaction as its ledger row's answer, and deleted in the same transaction that
-- stores the result, so a crash never loses a page that was paid for.
CREATE TABLE qz_query_page (
  provider    VARCHAR2(20 CHAR)  NOT NULL,
  subject_key VARCHAR2(200 CHAR) NOT NULL,
  page        NUMBER(19)       NOT NULL,   -- pageIndex, from 1
  job         VARCHAR2(100 CHAR) NOT NULL,
  search_key  VARCHAR2(500 CHAR) NOT NULL,   -- keyword / searchKey sent: other pages must match it
  page_size   NUMBER(19)       NOT NULL,   -- pageSize sent: other pages must match it
  total       NUMBER(19),                  -- TotalRecords of this answer
  calls       NUMBER(19)       NOT NULL,   -- calls spent on this page, retries included
  status_code VARCHAR2(20 CHAR)  NOT NULL,
  order_no    VARCHAR2(100 CHAR),
  items_json  CLOB         NOT NULL,   -- the page's records as received (a JSON array)
  fetched_at  VARCHAR2(19 CHAR)  NOT NULL,
  PRIMARY KEY (provider, subject_key, page)
);

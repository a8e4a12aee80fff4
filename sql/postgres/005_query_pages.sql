-- Migration 5: pages of a paged credit query (Shuidi, Qichacha) bought so far, PostgreSQL.
-- A subject with more pages than the day's budget leaves here what it bought; the next run
-- (the next Beijing day, when the budget is spent) continues from the following page, and the
-- subject's result is stored from all its pages once the last one is read. Each page is written
-- in the same transaction as its ledger row's answer, and deleted in the same transaction that
-- stores the result, so a crash never loses a page that was paid for.
CREATE TABLE IF NOT EXISTS qz_query_page (
  provider    VARCHAR(20)  NOT NULL,
  subject_key VARCHAR(200) NOT NULL,
  page        BIGINT       NOT NULL,   -- pageIndex, from 1
  job         VARCHAR(100) NOT NULL,
  search_key  VARCHAR(500) NOT NULL,   -- keyword / searchKey sent: other pages must match it
  page_size   BIGINT       NOT NULL,   -- pageSize sent: other pages must match it
  total       BIGINT,                  -- TotalRecords of this answer
  calls       BIGINT       NOT NULL,   -- calls spent on this page, retries included
  status_code VARCHAR(20)  NOT NULL,
  order_no    VARCHAR(100),
  items_json  TEXT         NOT NULL,   -- the page's records as received (a JSON array)
  fetched_at  VARCHAR(19)  NOT NULL,
  PRIMARY KEY (provider, subject_key, page)
);

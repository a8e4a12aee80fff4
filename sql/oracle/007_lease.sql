-- Oracle through ODBC (`database.dialect = "oracle"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"): VARCHAR2(n CHAR), NUMBER(19), CLOB, identity columns (12c); not yet
-- run on an Oracle server. No IF NOT EXISTS: `qianzhi migrate` records every version.
-- Migration 7: one owner per job across processes and machines, PostgreSQL.
-- A process sends for a job (or a query job) only while it holds the job's lease, and renews it
-- well before expires_at. token grows by one on every acquisition: each control-table
-- transaction of a run (cursor, outbox, acks, split progress, receipts, closing a batch,
-- reconciliation, query ledger) first locks the job's row here and checks that holder and token
-- are still its own, so a process that was paused or cut off and lost the lease commits nothing.
-- expires_at and heartbeat_at are milliseconds since 1970-01-01 UTC on the DATABASE's clock
-- (every process compares them with the database's own time, so the clocks of the 前置机 do not
-- have to agree). holder NULL: released; the next process takes it at once.
CREATE TABLE qz_lease (
  job         VARCHAR2(100 CHAR) PRIMARY KEY,
  holder      VARCHAR2(64 CHAR),             -- instance id of the holding process (qz_instance)
  host        VARCHAR2(255 CHAR),            -- its host name
  pid         NUMBER(19),                  -- its process id
  token       NUMBER(19)       NOT NULL,   -- fencing token: +1 on every acquisition
  expires_at  NUMBER(19)       NOT NULL,   -- database time, ms since the epoch
  acquired_at VARCHAR2(19 CHAR),             -- Beijing time, for reading
  renewed_at  VARCHAR2(19 CHAR)              -- Beijing time, for reading
);

-- One row per `qianzhi run` process: its heartbeat (database time, ms), renewed with its
-- leases. Processes whose heartbeat is older than lease.ttl count as gone; the live ones share
-- the jobs, each holding at most ceil(jobs / live processes) leases.
CREATE TABLE qz_instance (
  instance     VARCHAR2(64 CHAR)  PRIMARY KEY,
  host         VARCHAR2(255 CHAR) NOT NULL,
  pid          NUMBER(19)       NOT NULL,
  started_at   VARCHAR2(19 CHAR)  NOT NULL,  -- Beijing time
  heartbeat_at NUMBER(19)       NOT NULL   -- database time, ms since the epoch
);

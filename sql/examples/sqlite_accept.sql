-- qianzhi 示例（SQLite）：办件受理信息 (accept) 的前置库变更表、触发器和标准字段视图。
-- 业务表 biz_accept 是虚构的，请换成贵单位的业务表和列名。
-- 用法：sqlite3 department.db < sql/examples/sqlite_accept.sql
-- 对应的 [[job]] 配置见 config.toml.example（source = "v_accept_changes"，seq_column = "change_id"）。

-- 1. 业务表（虚构示例；实际环境中它已存在，由业务系统写入）。
CREATE TABLE IF NOT EXISTS biz_accept (
  id             INTEGER PRIMARY KEY,      -- 业务主键：qianzhi 的 key
  project_no     TEXT NOT NULL,            -- 办件编号
  task_name      TEXT NOT NULL,            -- 事项名称
  applicant      TEXT NOT NULL,            -- 申请人名称
  applicant_type TEXT NOT NULL,            -- 申请人类型（代码集 A.1，如 1 自然人）
  id_type        TEXT NOT NULL,            -- 申请人证件类型（代码集 A.2，如 111 居民身份证；多个用 ^ 分隔）
  id_no          TEXT NOT NULL,            -- 申请人证件号码（与证件类型一一对应，用 ^ 分隔）
  apply_time     TEXT NOT NULL,            -- 申请时间 'yyyy-MM-dd HH:mm:ss'
  accept_time    TEXT NOT NULL,            -- 受理时间
  accept_status  TEXT NOT NULL,            -- 受理状态代码（代码集 A.16）
  handler        TEXT,                     -- 受理人员
  summary        TEXT                      -- 办件摘要（config.toml.example 用 [job.map] 映射到 ProjectName）
);

-- 2. 前置库变更表：每次增、改、删写一行。
--    change_id：唯一、递增的变更号（配置为 seq_column），同一秒内的多次变更也不会漏读。
--    cd_time：变更时间，北京时间文本 'yyyy-MM-dd HH:mm:ss'（SQLite 的 'now' 是 UTC，故 +8 hours）。
--    cd_operation：I 新增、U 修改、D 删除。
CREATE TABLE IF NOT EXISTS accept_changes (
  change_id      INTEGER PRIMARY KEY AUTOINCREMENT,
  id             INTEGER NOT NULL,
  project_no     TEXT,
  task_name      TEXT,
  applicant      TEXT,
  applicant_type TEXT,
  id_type        TEXT,
  id_no          TEXT,
  apply_time     TEXT,
  accept_time    TEXT,
  accept_status  TEXT,
  handler        TEXT,
  summary        TEXT,
  cd_time        TEXT NOT NULL DEFAULT (datetime('now', '+8 hours')),
  cd_operation   TEXT NOT NULL CHECK (cd_operation IN ('I', 'U', 'D'))
);
-- qianzhi 按 (cd_time, change_id) 顺序读取，这个索引让每次读取只扫描新行。
CREATE INDEX IF NOT EXISTS accept_changes_ct ON accept_changes (cd_time, change_id);

-- 3. 触发器：业务表的每次变更写入变更表。删除行 (D) 带上删除前的最后取值。
CREATE TRIGGER IF NOT EXISTS biz_accept_ai AFTER INSERT ON biz_accept
BEGIN
  INSERT INTO accept_changes (id, project_no, task_name, applicant, applicant_type, id_type, id_no,
                              apply_time, accept_time, accept_status, handler, summary, cd_operation)
  VALUES (NEW.id, NEW.project_no, NEW.task_name, NEW.applicant, NEW.applicant_type, NEW.id_type, NEW.id_no,
          NEW.apply_time, NEW.accept_time, NEW.accept_status, NEW.handler, NEW.summary, 'I');
END;

CREATE TRIGGER IF NOT EXISTS biz_accept_au AFTER UPDATE ON biz_accept
BEGIN
  INSERT INTO accept_changes (id, project_no, task_name, applicant, applicant_type, id_type, id_no,
                              apply_time, accept_time, accept_status, handler, summary, cd_operation)
  VALUES (NEW.id, NEW.project_no, NEW.task_name, NEW.applicant, NEW.applicant_type, NEW.id_type, NEW.id_no,
          NEW.apply_time, NEW.accept_time, NEW.accept_status, NEW.handler, NEW.summary, 'U');
END;

CREATE TRIGGER IF NOT EXISTS biz_accept_ad AFTER DELETE ON biz_accept
BEGIN
  INSERT INTO accept_changes (id, project_no, task_name, applicant, applicant_type, id_type, id_no,
                              apply_time, accept_time, accept_status, handler, summary, cd_operation)
  VALUES (OLD.id, OLD.project_no, OLD.task_name, OLD.applicant, OLD.applicant_type, OLD.id_type, OLD.id_no,
          OLD.apply_time, OLD.accept_time, OLD.accept_status, OLD.handler, OLD.summary, 'D');
END;

-- 4. 视图：把业务列名改成平台的标准字段代码（大小写不限），qianzhi 按同名自动对应。
--    没有改名的列（summary）在配置里用 [job.map] 对应；业务表里没有的字段用 [job.constants]。
--    RowGuid 不必提供：qianzhi 由 job 名和 key 派生，同一业务行的 I/U/D 始终相同。
CREATE VIEW IF NOT EXISTS v_accept_changes AS
SELECT change_id,
       id,
       project_no     AS ProjectNo,
       task_name      AS TaskName,
       applicant      AS ApplyerName,
       applicant_type AS ApplyerType,
       id_type        AS ApplyerPageType,
       id_no          AS ApplyerPageCode,
       apply_time     AS ApplyDate,
       accept_time    AS AcceptDate,
       accept_status  AS SLZTDM,
       handler        AS HandleUserName,
       summary,
       cd_time,
       cd_operation
FROM accept_changes;

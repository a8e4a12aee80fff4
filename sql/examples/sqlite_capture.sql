-- qianzhi 示例（SQLite）：没有变更表时的采集方式，读业务表 biz_accept 本身
-- （表见 sqlite_accept.sql 第 1 步）。对应的 [[job]] 见 config.toml.example 末尾
-- （mode = "incremental"，有修改时间或只有递增版本号 / mode = "snapshot"）。
-- 用法：sqlite3 部门库.db < sql/examples/sqlite_capture.sql

-- A. mode = "incremental"：“最后修改时间”列（北京时间文本 'yyyy-MM-dd HH:mm:ss'），
--    由触发器在每次修改时刷新；和可选的软删除标记。
ALTER TABLE biz_accept ADD COLUMN updated_at TEXT NOT NULL DEFAULT '1970-01-01 00:00:00';
ALTER TABLE biz_accept ADD COLUMN is_deleted INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER IF NOT EXISTS biz_accept_touch AFTER UPDATE ON biz_accept
WHEN NEW.updated_at = OLD.updated_at
BEGIN
  UPDATE biz_accept SET updated_at = datetime('now', '+8 hours') WHERE id = NEW.id;
END;
CREATE TRIGGER IF NOT EXISTS biz_accept_touch_new AFTER INSERT ON biz_accept
BEGIN
  UPDATE biz_accept SET updated_at = datetime('now', '+8 hours') WHERE id = NEW.id;
END;
CREATE INDEX IF NOT EXISTS biz_accept_updated ON biz_accept (updated_at, id);

CREATE VIEW IF NOT EXISTS v_accept_incremental AS
SELECT id,
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
       updated_at,
       is_deleted
FROM biz_accept;

-- B. mode = "snapshot"：什么变更列都没有，每次读整个视图，与上次报送的内容逐键比对。
CREATE VIEW IF NOT EXISTS v_accept_snapshot AS
SELECT id,
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
       summary
FROM biz_accept;

-- C. mode = "incremental" + order = "seq"：没有修改时间列，只有一个每次新增、修改都取新值的版本号
--    ver（SQLite 没有序列；写入本来就一个接一个，取当前最大值加一即可）。
ALTER TABLE biz_accept ADD COLUMN ver INTEGER;
UPDATE biz_accept SET ver = id WHERE ver IS NULL;
CREATE TRIGGER IF NOT EXISTS biz_accept_ver AFTER UPDATE ON biz_accept
WHEN NEW.ver IS OLD.ver
BEGIN
  UPDATE biz_accept SET ver = (SELECT COALESCE(MAX(ver), 0) + 1 FROM biz_accept) WHERE id = NEW.id;
END;
CREATE TRIGGER IF NOT EXISTS biz_accept_ver_new AFTER INSERT ON biz_accept
BEGIN
  UPDATE biz_accept SET ver = (SELECT COALESCE(MAX(ver), 0) + 1 FROM biz_accept) WHERE id = NEW.id;
END;
CREATE UNIQUE INDEX IF NOT EXISTS biz_accept_ver ON biz_accept (ver);

CREATE VIEW IF NOT EXISTS v_accept_versioned AS
SELECT id,
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
       ver,
       is_deleted
FROM biz_accept;

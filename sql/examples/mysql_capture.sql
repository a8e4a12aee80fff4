-- qianzhi 示例（MySQL / MariaDB）：没有变更表时的采集方式，读业务表 biz_accept 本身
-- （表见 mysql_accept.sql 第 1 步）。对应的 [[job]] 见 config.toml.example 末尾
-- （mode = "incremental"，有修改时间或只有递增版本号 / mode = "snapshot"）。
-- 用法：mysql 部门库 < sql/examples/mysql_capture.sql

-- A. mode = "incremental"：“最后修改时间”列由 MySQL 在每次修改时自动刷新（ON UPDATE），
--    和可选的软删除标记。DATETIME 的值必须是北京时间（会话时区 +08:00）。
ALTER TABLE biz_accept
  ADD COLUMN updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  ADD COLUMN is_deleted TINYINT NOT NULL DEFAULT 0;
-- qianzhi 按 (updated_at, id) 读取上次位置之后的行（写成 MariaDB 能走索引范围扫描的形式）。
CREATE INDEX biz_accept_updated ON biz_accept (updated_at, id);

CREATE OR REPLACE VIEW v_accept_incremental AS
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
--    文本键按字节序读取（ORDER BY CAST(键 AS BINARY)，不受排序规则的大小写、尾部空格影响）。
CREATE OR REPLACE VIEW v_accept_snapshot AS
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

-- C. mode = "incremental" + order = "seq"：没有修改时间列，只有一个每次新增、修改都从序列取新值的
--    版本号 ver。序列是 MariaDB（10.3 起）的功能；MySQL 没有序列，可用只追加、从不修改的表的
--    AUTO_INCREMENT 列作 seq_column。qianzhi 只读到 settle_lag 之前观测到的最大 ver，
--    先取号、后提交的行不会被跳过。
CREATE SEQUENCE IF NOT EXISTS biz_accept_ver_seq;
ALTER TABLE biz_accept ADD COLUMN ver BIGINT;
UPDATE biz_accept SET ver = NEXT VALUE FOR biz_accept_ver_seq WHERE ver IS NULL;
CREATE TRIGGER biz_accept_ver_ins BEFORE INSERT ON biz_accept
  FOR EACH ROW SET NEW.ver = NEXT VALUE FOR biz_accept_ver_seq;
CREATE TRIGGER biz_accept_ver_upd BEFORE UPDATE ON biz_accept
  FOR EACH ROW SET NEW.ver = NEXT VALUE FOR biz_accept_ver_seq;
-- qianzhi 按 ver 读取（WHERE ver > 上次位置 AND ver <= 已稳定的最大值 ORDER BY ver）。
CREATE UNIQUE INDEX biz_accept_ver ON biz_accept (ver);

CREATE OR REPLACE VIEW v_accept_versioned AS
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

-- qianzhi 示例（MySQL 5.7+/8.0，亦适用于 MariaDB、TiDB、OceanBase MySQL 模式、GoldenDB）：
-- 办件受理信息 (accept) 的前置库变更表、触发器和标准字段视图。
-- 业务表 biz_accept 是虚构的，请换成贵单位的业务表和列名。
-- 用法：mysql 部门库 < sql/examples/mysql_accept.sql
-- （每个触发器体只有一条语句，不需要 DELIMITER。TiDB 不支持触发器：请由业务系统直接写变更表。）
-- 对应的 [[job]] 配置见 config.toml.example（source = "v_accept_changes"，seq_column = "change_id"）。

-- 1. 业务表（虚构示例；实际环境中它已存在，由业务系统写入）。
CREATE TABLE IF NOT EXISTS biz_accept (
  id             BIGINT PRIMARY KEY,       -- 业务主键：qianzhi 的 key
  project_no     VARCHAR(50)   NOT NULL,   -- 办件编号
  task_name      VARCHAR(1000) NOT NULL,   -- 事项名称
  applicant      VARCHAR(100)  NOT NULL,   -- 申请人名称
  applicant_type VARCHAR(2)    NOT NULL,   -- 申请人类型（代码集 A.1，如 1 自然人）
  id_type        VARCHAR(70)   NOT NULL,   -- 申请人证件类型（代码集 A.2，如 111 居民身份证；多个用 ^ 分隔）
  id_no          VARCHAR(500)  NOT NULL,   -- 申请人证件号码（与证件类型一一对应，用 ^ 分隔）
  apply_time     DATETIME      NOT NULL,   -- 申请时间
  accept_time    DATETIME      NOT NULL,   -- 受理时间
  accept_status  VARCHAR(2)    NOT NULL,   -- 受理状态代码（代码集 A.16）
  handler        VARCHAR(100),             -- 受理人员
  summary        VARCHAR(1000)             -- 办件摘要（config.toml.example 用 [job.map] 映射到 ProjectName）
) DEFAULT CHARSET = utf8mb4;

-- 2. 前置库变更表：每次增、改、删写一行。
--    change_id：唯一、递增的变更号（配置为 seq_column），同一秒内的多次变更也不会漏读。
--    cd_time：变更时间，DATETIME，必须是北京时间：NOW() 取会话时区，
--             请确认 SELECT @@time_zone, NOW(); 显示的是北京时间（或设 time_zone = '+08:00'）。
--    cd_operation：I 新增、U 修改、D 删除。
CREATE TABLE IF NOT EXISTS accept_changes (
  change_id      BIGINT AUTO_INCREMENT PRIMARY KEY,
  id             BIGINT        NOT NULL,
  project_no     VARCHAR(50),
  task_name      VARCHAR(1000),
  applicant      VARCHAR(100),
  applicant_type VARCHAR(2),
  id_type        VARCHAR(70),
  id_no          VARCHAR(500),
  apply_time     DATETIME,
  accept_time    DATETIME,
  accept_status  VARCHAR(2),
  handler        VARCHAR(100),
  summary        VARCHAR(1000),
  cd_time        DATETIME      NOT NULL DEFAULT CURRENT_TIMESTAMP,
  cd_operation   CHAR(1)       NOT NULL,
  -- qianzhi 按 (cd_time, change_id) 顺序读取，这个索引让每次读取只扫描新行。
  INDEX accept_changes_ct (cd_time, change_id)
) DEFAULT CHARSET = utf8mb4;

-- 3. 触发器：业务表的每次变更写入变更表。删除行 (D) 带上删除前的最后取值 (OLD)。
DROP TRIGGER IF EXISTS biz_accept_ai;
CREATE TRIGGER biz_accept_ai AFTER INSERT ON biz_accept FOR EACH ROW
  INSERT INTO accept_changes (id, project_no, task_name, applicant, applicant_type, id_type, id_no,
                              apply_time, accept_time, accept_status, handler, summary, cd_operation)
  VALUES (NEW.id, NEW.project_no, NEW.task_name, NEW.applicant, NEW.applicant_type, NEW.id_type, NEW.id_no,
          NEW.apply_time, NEW.accept_time, NEW.accept_status, NEW.handler, NEW.summary, 'I');

DROP TRIGGER IF EXISTS biz_accept_au;
CREATE TRIGGER biz_accept_au AFTER UPDATE ON biz_accept FOR EACH ROW
  INSERT INTO accept_changes (id, project_no, task_name, applicant, applicant_type, id_type, id_no,
                              apply_time, accept_time, accept_status, handler, summary, cd_operation)
  VALUES (NEW.id, NEW.project_no, NEW.task_name, NEW.applicant, NEW.applicant_type, NEW.id_type, NEW.id_no,
          NEW.apply_time, NEW.accept_time, NEW.accept_status, NEW.handler, NEW.summary, 'U');

DROP TRIGGER IF EXISTS biz_accept_ad;
CREATE TRIGGER biz_accept_ad AFTER DELETE ON biz_accept FOR EACH ROW
  INSERT INTO accept_changes (id, project_no, task_name, applicant, applicant_type, id_type, id_no,
                              apply_time, accept_time, accept_status, handler, summary, cd_operation)
  VALUES (OLD.id, OLD.project_no, OLD.task_name, OLD.applicant, OLD.applicant_type, OLD.id_type, OLD.id_no,
          OLD.apply_time, OLD.accept_time, OLD.accept_status, OLD.handler, OLD.summary, 'D');

-- 4. 视图：把业务列名改成平台的标准字段代码（大小写不限），qianzhi 按同名自动对应。
--    没有改名的列（summary）在配置里用 [job.map] 对应；业务表里没有的字段用 [job.constants]。
--    RowGuid 不必提供：qianzhi 由 job 名和 key 派生，同一业务行的 I/U/D 始终相同。
CREATE OR REPLACE VIEW v_accept_changes AS
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

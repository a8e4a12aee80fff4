-- qianzhi 示例（PostgreSQL，亦适用于 Kingbase、openGauss、GaussDB）：
-- 办件受理信息 (accept) 的前置库变更表、触发器和标准字段视图。
-- 业务表 biz_accept 是虚构的，请换成贵单位的业务表和列名。
-- 用法：psql -d 部门库 -f sql/examples/postgres_accept.sql
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
  apply_time     TIMESTAMP     NOT NULL,   -- 申请时间
  accept_time    TIMESTAMP     NOT NULL,   -- 受理时间
  accept_status  VARCHAR(2)    NOT NULL,   -- 受理状态代码（代码集 A.16）
  handler        VARCHAR(100),             -- 受理人员
  summary        VARCHAR(1000)             -- 办件摘要（config.toml.example 用 [job.map] 映射到 ProjectName）
);

-- 2. 前置库变更表：每次增、改、删写一行。
--    change_id：唯一、递增的变更号（配置为 seq_column），同一时刻的多次变更也不会漏读。
--    cd_time：变更时间。TIMESTAMPTZ 由 qianzhi 换算为北京时间；若用 TIMESTAMP（无时区），
--             其值必须是北京时间。
--    cd_operation：I 新增、U 修改、D 删除。
CREATE TABLE IF NOT EXISTS accept_changes (
  change_id      BIGSERIAL PRIMARY KEY,
  id             BIGINT       NOT NULL,
  project_no     VARCHAR(50),
  task_name      VARCHAR(1000),
  applicant      VARCHAR(100),
  applicant_type VARCHAR(2),
  id_type        VARCHAR(70),
  id_no          VARCHAR(500),
  apply_time     TIMESTAMP,
  accept_time    TIMESTAMP,
  accept_status  VARCHAR(2),
  handler        VARCHAR(100),
  summary        VARCHAR(1000),
  cd_time        TIMESTAMPTZ  NOT NULL DEFAULT now(),
  cd_operation   CHAR(1)      NOT NULL CHECK (cd_operation IN ('I', 'U', 'D'))
);
-- qianzhi 按 (cd_time, change_id) 顺序读取，这个索引让每次读取只扫描新行。
CREATE INDEX IF NOT EXISTS accept_changes_ct ON accept_changes (cd_time, change_id);

-- 3. 触发器：业务表的每次变更写入变更表。删除行 (D) 带上删除前的最后取值 (OLD)。
CREATE OR REPLACE FUNCTION biz_accept_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r biz_accept%ROWTYPE;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  INSERT INTO accept_changes (id, project_no, task_name, applicant, applicant_type, id_type, id_no,
                              apply_time, accept_time, accept_status, handler, summary, cd_operation)
  VALUES (r.id, r.project_no, r.task_name, r.applicant, r.applicant_type, r.id_type, r.id_no,
          r.apply_time, r.accept_time, r.accept_status, r.handler, r.summary, left(TG_OP, 1));
  RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS biz_accept_capture ON biz_accept;
CREATE TRIGGER biz_accept_capture
  AFTER INSERT OR UPDATE OR DELETE ON biz_accept
  FOR EACH ROW EXECUTE FUNCTION biz_accept_capture();
-- 较老的版本（PostgreSQL 10 及以前、部分国产库）请把 EXECUTE FUNCTION 写成 EXECUTE PROCEDURE。

-- 4. 视图：把业务列名改成平台的标准字段代码，qianzhi 按同名自动对应（不区分大小写，
--    因此不必加双引号）。没有改名的列（summary）在配置里用 [job.map] 对应；业务表里没有的
--    字段用 [job.constants]。RowGuid 不必提供：qianzhi 由 job 名和 key 派生，同一业务行的
--    I/U/D 始终相同。
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

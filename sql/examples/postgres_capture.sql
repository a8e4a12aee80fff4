-- qianzhi 示例（PostgreSQL）：没有变更表时的采集方式，读业务表 biz_accept 本身
-- （表见 postgres_accept.sql 第 1 步）。对应的 [[job]] 见 config.toml.example 末尾
-- （mode = "incremental"，有修改时间或只有递增版本号 / mode = "snapshot"）。
-- 用法：psql -d 部门库 -f sql/examples/postgres_capture.sql

-- A. mode = "incremental"：业务表有“最后修改时间”列（每次修改都更新它），和可选的软删除标记。
ALTER TABLE biz_accept ADD COLUMN IF NOT EXISTS updated_at TIMESTAMP NOT NULL DEFAULT now();
ALTER TABLE biz_accept ADD COLUMN IF NOT EXISTS is_deleted SMALLINT NOT NULL DEFAULT 0;
-- 业务系统不写 updated_at 时，用触发器保证每次 UPDATE 都刷新它（必须是北京时间，或用 TIMESTAMPTZ）。
CREATE OR REPLACE FUNCTION biz_accept_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END;
$$;
DROP TRIGGER IF EXISTS biz_accept_touch ON biz_accept;
CREATE TRIGGER biz_accept_touch BEFORE UPDATE ON biz_accept
  FOR EACH ROW EXECUTE FUNCTION biz_accept_touch();
-- qianzhi 按 (updated_at, id) 读取上次位置之后的行：这个索引让每次只读新改动的行。
CREATE INDEX IF NOT EXISTS biz_accept_updated ON biz_accept (updated_at, id);

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
--    qianzhi 按键的字节序读取（文本键写成 ORDER BY id COLLATE "C"），整数键有主键索引即可。
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
--    版本号 ver（序列按时间顺序发号：PostgreSQL 默认的 CACHE 1 即可，不要调大 CACHE）。
--    qianzhi 只读到 settle_lag 之前观测到的最大 ver，先取号、后提交的行不会被跳过。
CREATE SEQUENCE IF NOT EXISTS biz_accept_ver_seq;
ALTER TABLE biz_accept ADD COLUMN IF NOT EXISTS ver BIGINT;
UPDATE biz_accept SET ver = nextval('biz_accept_ver_seq') WHERE ver IS NULL;
CREATE OR REPLACE FUNCTION biz_accept_next_ver() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.ver := nextval('biz_accept_ver_seq'); RETURN NEW; END;
$$;
DROP TRIGGER IF EXISTS biz_accept_next_ver ON biz_accept;
CREATE TRIGGER biz_accept_next_ver BEFORE INSERT OR UPDATE ON biz_accept
  FOR EACH ROW EXECUTE FUNCTION biz_accept_next_ver();
-- qianzhi 按 ver 读取（WHERE ver > 上次位置 AND ver <= 已稳定的最大值 ORDER BY ver）。
CREATE UNIQUE INDEX IF NOT EXISTS biz_accept_ver ON biz_accept (ver);

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

-- DM (达梦) through ODBC (`database.dialect = "dm"`). Written from the PostgreSQL file by the
-- rules in README ("ODBC"): VARCHAR2(n CHAR), BIGINT, CLOB, IDENTITY; not yet run on a DM server.
-- No IF NOT EXISTS: `qianzhi migrate` records every version in qz_schema_version.
-- qianzhi credit queries (migration 2), PostgreSQL (also Kingbase, openGauss, GaussDB). Applied by `qianzhi migrate`.
-- Times are Beijing time as text 'yyyy-MM-dd HH:mm:ss'; days are 'yyyyMMdd' (Beijing).

-- The spend ledger: one row per call sent to a paid provider, written before the call goes
-- out (so a crash mid-call still counts against the budget) and completed with the answer.
-- billed = 1 for answers we expect on the bill (data, or a definitive "no result");
-- order_no is the provider's own order number, for reconciling the bill.
CREATE TABLE qz_query_ledger (
  id          BIGINT IDENTITY(1, 1) PRIMARY KEY,
  provider    VARCHAR2(20 CHAR)  NOT NULL,
  job         VARCHAR2(100 CHAR) NOT NULL,
  subject_key VARCHAR2(200 CHAR) NOT NULL,
  page        BIGINT       NOT NULL,
  call_day    VARCHAR2(8 CHAR)   NOT NULL,
  called_at   VARCHAR2(19 CHAR)  NOT NULL,
  status_code VARCHAR2(20 CHAR),            -- the provider's code, else 'HTTP 503' or 'network'
  action      VARCHAR2(20 CHAR),            -- success, no_result, retry_later, pause, stop_provider, ...
  billed      BIGINT       DEFAULT 0 NOT NULL,
  order_no    VARCHAR2(100 CHAR),
  message     CLOB
);
CREATE INDEX qz_query_ledger_day ON qz_query_ledger (provider, call_day);
-- Calls sent per provider and Beijing day. Reserving a call is one conditional UPDATE
-- (calls < daily_budget) in the same transaction as its ledger row, so two jobs or a restart
-- can never spend past the budget.
CREATE TABLE qz_query_budget (
  provider VARCHAR2(20 CHAR) NOT NULL,
  call_day VARCHAR2(8 CHAR)  NOT NULL,
  calls    BIGINT      NOT NULL,
  PRIMARY KEY (provider, call_day)
);

-- Pauses and stops, so `qianzhi status` and the DBA see them. state: active, paused, stopped.
-- A pause is honoured until paused_until, across restarts; a stop lasts until qianzhi is
-- restarted after the cause (key, permission, quota) is fixed.
CREATE TABLE qz_query_provider (
  provider     VARCHAR2(20 CHAR) PRIMARY KEY,
  state        VARCHAR2(10 CHAR) NOT NULL,
  paused_until VARCHAR2(19 CHAR),
  status_code  VARCHAR2(20 CHAR),
  reason       CLOB,
  updated_at   VARCHAR2(19 CHAR) NOT NULL
);

-- Last result per provider and subject. last_status: found, no_result, rejected.
-- A subject is asked again once fetched_at is older than the job's fresh_for.
CREATE TABLE qz_query_subject (
  provider     VARCHAR2(20 CHAR)  NOT NULL,
  subject_key  VARCHAR2(200 CHAR) NOT NULL,
  subject_name VARCHAR2(500 CHAR),
  job          VARCHAR2(100 CHAR) NOT NULL,
  last_status  VARCHAR2(20 CHAR)  NOT NULL,
  status_code  VARCHAR2(20 CHAR),
  message      CLOB,
  record_count BIGINT       NOT NULL,
  calls        BIGINT       NOT NULL,
  order_no     VARCHAR2(100 CHAR),
  fetched_at   VARCHAR2(19 CHAR)  NOT NULL,
  PRIMARY KEY (provider, subject_key)
);

-- 水滴 工商行政处罚: one row per penalty. A re-query replaces the subject's rows.
CREATE TABLE qz_shuidi_punish (
  id             BIGINT IDENTITY(1, 1) PRIMARY KEY,
  subject_key    VARCHAR2(200 CHAR) NOT NULL,
  subject_name   VARCHAR2(500 CHAR),
  fetched_at     VARCHAR2(19 CHAR)  NOT NULL,
  seq            BIGINT       NOT NULL,   -- order in the provider's answer, from 1
  punish_code    VARCHAR2(4000 CHAR),                    -- PunishCode 行政处罚决定书文号
  illegal_type   VARCHAR2(4000 CHAR),                    -- IllegalType 违法行为类型
  authority      VARCHAR2(4000 CHAR),                    -- Authority 行政处罚决定机关名称
  content        CLOB,                    -- Content 行政处罚内容
  punish_date    VARCHAR2(50 CHAR),             -- PunishDate 作出行政处罚决定日期
  public_date    VARCHAR2(50 CHAR),             -- PublicDate 作出行政公示日期
  punish_content CLOB,                    -- PunishContent 备注
  raw_json       CLOB NOT NULL
);
CREATE INDEX qz_shuidi_punish_subject ON qz_shuidi_punish (subject_key);
-- 企查查 进出口信用核查: one row per customs registration (Result.Data).
CREATE TABLE qz_qcc_customs_credit (
  id             BIGINT IDENTITY(1, 1) PRIMARY KEY,
  subject_key    VARCHAR2(200 CHAR) NOT NULL,
  subject_name   VARCHAR2(500 CHAR),
  fetched_at     VARCHAR2(19 CHAR)  NOT NULL,
  seq            BIGINT       NOT NULL,   -- order in the answer, from 1 (credit_seq below)
  record_id      VARCHAR2(100 CHAR),            -- Id 内部 ID
  reg_gov        VARCHAR2(4000 CHAR),                    -- RegGov 注册海关
  trade_type     VARCHAR2(4000 CHAR),                    -- TradeType 经营类别
  reg_date       VARCHAR2(50 CHAR),             -- RegDate 注册日期
  reg_no         VARCHAR2(100 CHAR),            -- RegNo 海关注册编码
  admin_area     VARCHAR2(4000 CHAR),                    -- AdminArea 行政地区
  econo_area     VARCHAR2(4000 CHAR),                    -- EconoArea 经济地区
  special_area   VARCHAR2(4000 CHAR),                    -- SpecialArea 特殊贸易区域
  cancel_flag    VARCHAR2(4000 CHAR),                    -- CancelFlag 海关注销标志
  annual_status  VARCHAR2(4000 CHAR),                    -- AnnualStatus 年报情况
  validity_date  VARCHAR2(50 CHAR),             -- ValidityDate 报关有效期
  industry_type  VARCHAR2(4000 CHAR),                    -- IndustryType 行业种类
  ebusiness_type VARCHAR2(4000 CHAR),                    -- EBusinessType 跨境贸易电子商务类型
  identify_date  VARCHAR2(50 CHAR),             -- IdentifyDate 认定时间
  identify_level VARCHAR2(4000 CHAR),                    -- IdentifyLevel 信用等级
  identify_code  VARCHAR2(4000 CHAR),                    -- IdentifyCode 认证证书编码
  punish_count   BIGINT,                  -- entries of PunishList (rows in qz_qcc_customs_punish)
  raw_json       CLOB NOT NULL
);
CREATE INDEX qz_qcc_customs_credit_subject ON qz_qcc_customs_credit (subject_key);
-- 企查查 海关行政处罚 (PunishList of each customs registration).
CREATE TABLE qz_qcc_customs_punish (
  id          BIGINT IDENTITY(1, 1) PRIMARY KEY,
  subject_key VARCHAR2(200 CHAR) NOT NULL,
  subject_name VARCHAR2(500 CHAR),
  fetched_at  VARCHAR2(19 CHAR)  NOT NULL,
  seq         BIGINT       NOT NULL,
  credit_seq  BIGINT       NOT NULL,      -- qz_qcc_customs_credit.seq of the same fetch
  credit_id   VARCHAR2(100 CHAR),               -- qz_qcc_customs_credit.record_id
  reg_no      VARCHAR2(100 CHAR),               -- 海关注册编码 of that registration
  no          VARCHAR2(50 CHAR),                -- No 序号
  decision_no VARCHAR2(4000 CHAR),                       -- DecisionNo 行政处罚决定书编号
  party       VARCHAR2(4000 CHAR),                       -- Party 当事人
  punish_date VARCHAR2(50 CHAR),                -- PunishDate 处罚日期
  case_prop   VARCHAR2(4000 CHAR),                       -- CaseProp 案件性质
  raw_json    CLOB NOT NULL
);
CREATE INDEX qz_qcc_customs_punish_subject ON qz_qcc_customs_punish (subject_key);
-- 信数 税务负面信息: every field of data[]. card_no, finance_card_no and contact_phone are
-- personal data: grant SELECT on this table accordingly.
CREATE TABLE qz_xinshu_tax_black (
  id              BIGINT IDENTITY(1, 1) PRIMARY KEY,
  subject_key     VARCHAR2(200 CHAR) NOT NULL,
  subject_name    VARCHAR2(500 CHAR),
  fetched_at      VARCHAR2(19 CHAR)  NOT NULL,
  seq             BIGINT       NOT NULL,
  black_type      VARCHAR2(4000 CHAR),                   -- blackType 黑名单类型
  area_name       VARCHAR2(4000 CHAR),                   -- areaName 区域名称
  tax_org_type    VARCHAR2(4000 CHAR),                   -- taxOrgType 税务局分类
  tax_org         VARCHAR2(4000 CHAR),                   -- taxOrg 信息发布税务局
  manager_org     VARCHAR2(4000 CHAR),                   -- managerOrg 管理或征管机关
  credit_no       VARCHAR2(100 CHAR),           -- creditNo 统一社会信用代码
  computer_no     VARCHAR2(100 CHAR),           -- computerNo 计算机代码
  tax_manage_no   VARCHAR2(100 CHAR),           -- taxManageNo 税务管理代码
  tax_no          VARCHAR2(100 CHAR),           -- taxNo 纳税人识别号
  reg_name        VARCHAR2(4000 CHAR),                   -- regName 纳税人名称
  reg_no          VARCHAR2(100 CHAR),           -- regNo 企业注册号
  org_code        VARCHAR2(100 CHAR),           -- orgCode 组织机构代码
  reg_type        VARCHAR2(4000 CHAR),                   -- regType 登记户类别
  fr_name         VARCHAR2(4000 CHAR),                   -- frName 法定代表人(负责人)姓名
  card_type       VARCHAR2(4000 CHAR),                   -- cardType 证件种类
  card_no         VARCHAR2(100 CHAR),           -- cardNo 证件号码
  finance_name    VARCHAR2(4000 CHAR),                   -- financeName 财务负责人姓名
  finance_card_no VARCHAR2(100 CHAR),           -- financeCardNo 财务负责人证件号码
  address         VARCHAR2(4000 CHAR),                   -- address 生产经营地址
  contact_phone   VARCHAR2(100 CHAR),           -- contactPhone 联系电话
  eval_date       VARCHAR2(50 CHAR),            -- evalDate 认定日期或所属日期
  pay_limit_date  VARCHAR2(50 CHAR),            -- payLimitDate 限缴日期
  eval_reason     CLOB,                   -- evalReason 认定原因
  is_owing_tax    VARCHAR2(4000 CHAR),                   -- isOwingTax 有无欠税
  tax_type        VARCHAR2(4000 CHAR),                   -- taxType 税种
  tax_sum         VARCHAR2(4000 CHAR),                   -- taxSum 余额或金额
  tax_sum_new     VARCHAR2(4000 CHAR),                   -- taxSumNew 当期新发生欠税额或金额
  illegal         CLOB,                   -- illegal 违法事实及处罚情况
  crawl_source    VARCHAR2(4000 CHAR),                   -- crawlSource 信息来源网址
  biz_org         VARCHAR2(4000 CHAR),                   -- bizOrg 组代号码办证机构名称
  biz_date        VARCHAR2(50 CHAR),            -- bizDate 组代号码办证日期
  reg_date        VARCHAR2(50 CHAR),            -- regDate 组代号码注册日期
  expire_date     VARCHAR2(50 CHAR),            -- expireDate 组代号码到期日期
  raw_json        CLOB NOT NULL
);
CREATE INDEX qz_xinshu_tax_black_subject ON qz_xinshu_tax_black (subject_key);

-- qianzhi credit queries (migration 2), MySQL 5.7+/MariaDB 10.3+ (also TiDB, OceanBase, GoldenDB). Applied by `qianzhi migrate`.
-- Times are Beijing time as text 'yyyy-MM-dd HH:mm:ss'; days are 'yyyyMMdd' (Beijing).

-- The spend ledger: one row per call sent to a paid provider, written before the call goes
-- out (so a crash mid-call still counts against the budget) and completed with the answer.
-- billed = 1 for answers we expect on the bill (data, or a definitive "no result");
-- order_no is the provider's own order number, for reconciling the bill.
CREATE TABLE IF NOT EXISTS qz_query_ledger (
  id          BIGINT PRIMARY KEY AUTO_INCREMENT,
  provider    VARCHAR(20)  NOT NULL,
  job         VARCHAR(100) NOT NULL,
  subject_key VARCHAR(200) NOT NULL,
  page        BIGINT       NOT NULL,
  call_day    VARCHAR(8)   NOT NULL,
  called_at   VARCHAR(19)  NOT NULL,
  status_code VARCHAR(20),            -- the provider's code, else 'HTTP 503' or 'network'
  action      VARCHAR(20),            -- success, no_result, retry_later, pause, stop_provider, ...
  billed      BIGINT       NOT NULL DEFAULT 0,
  order_no    VARCHAR(100),
  message     TEXT,
  INDEX qz_query_ledger_day (provider, call_day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- Calls sent per provider and Beijing day. Reserving a call is one conditional UPDATE
-- (calls < daily_budget) in the same transaction as its ledger row, so two jobs or a restart
-- can never spend past the budget.
CREATE TABLE IF NOT EXISTS qz_query_budget (
  provider VARCHAR(20) NOT NULL,
  call_day VARCHAR(8)  NOT NULL,
  calls    BIGINT      NOT NULL,
  PRIMARY KEY (provider, call_day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Pauses and stops, so `qianzhi status` and the DBA see them. state: active, paused, stopped.
-- A pause is honoured until paused_until, across restarts; a stop lasts until qianzhi is
-- restarted after the cause (key, permission, quota) is fixed.
CREATE TABLE IF NOT EXISTS qz_query_provider (
  provider     VARCHAR(20) PRIMARY KEY,
  state        VARCHAR(10) NOT NULL,
  paused_until VARCHAR(19),
  status_code  VARCHAR(20),
  reason       TEXT,
  updated_at   VARCHAR(19) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Last result per provider and subject. last_status: found, no_result, rejected.
-- A subject is asked again once fetched_at is older than the job's fresh_for.
CREATE TABLE IF NOT EXISTS qz_query_subject (
  provider     VARCHAR(20)  NOT NULL,
  subject_key  VARCHAR(200) NOT NULL,
  subject_name VARCHAR(500),
  job          VARCHAR(100) NOT NULL,
  last_status  VARCHAR(20)  NOT NULL,
  status_code  VARCHAR(20),
  message      TEXT,
  record_count BIGINT       NOT NULL,
  calls        BIGINT       NOT NULL,
  order_no     VARCHAR(100),
  fetched_at   VARCHAR(19)  NOT NULL,
  PRIMARY KEY (provider, subject_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- 水滴 工商行政处罚: one row per penalty. A re-query replaces the subject's rows.
CREATE TABLE IF NOT EXISTS qz_shuidi_punish (
  id             BIGINT PRIMARY KEY AUTO_INCREMENT,
  subject_key    VARCHAR(200) NOT NULL,
  subject_name   VARCHAR(500),
  fetched_at     VARCHAR(19)  NOT NULL,
  seq            BIGINT       NOT NULL,   -- order in the provider's answer, from 1
  punish_code    TEXT,                    -- PunishCode 行政处罚决定书文号
  illegal_type   TEXT,                    -- IllegalType 违法行为类型
  authority      TEXT,                    -- Authority 行政处罚决定机关名称
  content        TEXT,                    -- Content 行政处罚内容
  punish_date    VARCHAR(50),             -- PunishDate 作出行政处罚决定日期
  public_date    VARCHAR(50),             -- PublicDate 作出行政公示日期
  punish_content TEXT,                    -- PunishContent 备注
  raw_json       MEDIUMTEXT NOT NULL,
  INDEX qz_shuidi_punish_subject (subject_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- 企查查 进出口信用核查: one row per customs registration (Result.Data).
CREATE TABLE IF NOT EXISTS qz_qcc_customs_credit (
  id             BIGINT PRIMARY KEY AUTO_INCREMENT,
  subject_key    VARCHAR(200) NOT NULL,
  subject_name   VARCHAR(500),
  fetched_at     VARCHAR(19)  NOT NULL,
  seq            BIGINT       NOT NULL,   -- order in the answer, from 1 (credit_seq below)
  record_id      VARCHAR(100),            -- Id 内部 ID
  reg_gov        TEXT,                    -- RegGov 注册海关
  trade_type     TEXT,                    -- TradeType 经营类别
  reg_date       VARCHAR(50),             -- RegDate 注册日期
  reg_no         VARCHAR(100),            -- RegNo 海关注册编码
  admin_area     TEXT,                    -- AdminArea 行政地区
  econo_area     TEXT,                    -- EconoArea 经济地区
  special_area   TEXT,                    -- SpecialArea 特殊贸易区域
  cancel_flag    TEXT,                    -- CancelFlag 海关注销标志
  annual_status  TEXT,                    -- AnnualStatus 年报情况
  validity_date  VARCHAR(50),             -- ValidityDate 报关有效期
  industry_type  TEXT,                    -- IndustryType 行业种类
  ebusiness_type TEXT,                    -- EBusinessType 跨境贸易电子商务类型
  identify_date  VARCHAR(50),             -- IdentifyDate 认定时间
  identify_level TEXT,                    -- IdentifyLevel 信用等级
  identify_code  TEXT,                    -- IdentifyCode 认证证书编码
  punish_count   BIGINT,                  -- entries of PunishList (rows in qz_qcc_customs_punish)
  raw_json       MEDIUMTEXT NOT NULL,
  INDEX qz_qcc_customs_credit_subject (subject_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- 企查查 海关行政处罚 (PunishList of each customs registration).
CREATE TABLE IF NOT EXISTS qz_qcc_customs_punish (
  id          BIGINT PRIMARY KEY AUTO_INCREMENT,
  subject_key VARCHAR(200) NOT NULL,
  subject_name VARCHAR(500),
  fetched_at  VARCHAR(19)  NOT NULL,
  seq         BIGINT       NOT NULL,
  credit_seq  BIGINT       NOT NULL,      -- qz_qcc_customs_credit.seq of the same fetch
  credit_id   VARCHAR(100),               -- qz_qcc_customs_credit.record_id
  reg_no      VARCHAR(100),               -- 海关注册编码 of that registration
  no          VARCHAR(50),                -- No 序号
  decision_no TEXT,                       -- DecisionNo 行政处罚决定书编号
  party       TEXT,                       -- Party 当事人
  punish_date VARCHAR(50),                -- PunishDate 处罚日期
  case_prop   TEXT,                       -- CaseProp 案件性质
  raw_json    MEDIUMTEXT NOT NULL,
  INDEX qz_qcc_customs_punish_subject (subject_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- 信数 税务负面信息: every field of data[]. card_no, finance_card_no and contact_phone are
-- personal data: grant SELECT on this table accordingly.
CREATE TABLE IF NOT EXISTS qz_xinshu_tax_black (
  id              BIGINT PRIMARY KEY AUTO_INCREMENT,
  subject_key     VARCHAR(200) NOT NULL,
  subject_name    VARCHAR(500),
  fetched_at      VARCHAR(19)  NOT NULL,
  seq             BIGINT       NOT NULL,
  black_type      TEXT,                   -- blackType 黑名单类型
  area_name       TEXT,                   -- areaName 区域名称
  tax_org_type    TEXT,                   -- taxOrgType 税务局分类
  tax_org         TEXT,                   -- taxOrg 信息发布税务局
  manager_org     TEXT,                   -- managerOrg 管理或征管机关
  credit_no       VARCHAR(100),           -- creditNo 统一社会信用代码
  computer_no     VARCHAR(100),           -- computerNo 计算机代码
  tax_manage_no   VARCHAR(100),           -- taxManageNo 税务管理代码
  tax_no          VARCHAR(100),           -- taxNo 纳税人识别号
  reg_name        TEXT,                   -- regName 纳税人名称
  reg_no          VARCHAR(100),           -- regNo 企业注册号
  org_code        VARCHAR(100),           -- orgCode 组织机构代码
  reg_type        TEXT,                   -- regType 登记户类别
  fr_name         TEXT,                   -- frName 法定代表人(负责人)姓名
  card_type       TEXT,                   -- cardType 证件种类
  card_no         VARCHAR(100),           -- cardNo 证件号码
  finance_name    TEXT,                   -- financeName 财务负责人姓名
  finance_card_no VARCHAR(100),           -- financeCardNo 财务负责人证件号码
  address         TEXT,                   -- address 生产经营地址
  contact_phone   VARCHAR(100),           -- contactPhone 联系电话
  eval_date       VARCHAR(50),            -- evalDate 认定日期或所属日期
  pay_limit_date  VARCHAR(50),            -- payLimitDate 限缴日期
  eval_reason     TEXT,                   -- evalReason 认定原因
  is_owing_tax    TEXT,                   -- isOwingTax 有无欠税
  tax_type        TEXT,                   -- taxType 税种
  tax_sum         TEXT,                   -- taxSum 余额或金额
  tax_sum_new     TEXT,                   -- taxSumNew 当期新发生欠税额或金额
  illegal         TEXT,                   -- illegal 违法事实及处罚情况
  crawl_source    TEXT,                   -- crawlSource 信息来源网址
  biz_org         TEXT,                   -- bizOrg 组代号码办证机构名称
  biz_date        VARCHAR(50),            -- bizDate 组代号码办证日期
  reg_date        VARCHAR(50),            -- regDate 组代号码注册日期
  expire_date     VARCHAR(50),            -- expireDate 组代号码到期日期
  raw_json        MEDIUMTEXT NOT NULL,
  INDEX qz_xinshu_tax_black_subject (subject_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

//! Credit-query part of `qianzhi demo` and the tests: the sample subjects (their table is made
//! by `db::tools`), provider sections and one query job per provider wired to the simulator,
//! and the simulator's sample data.

use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

use super::query_sim::{QuerySim, qcc_records, shuidi_records, xinshu_record};
pub use crate::db::tools::SubjectRow;
use crate::query::Provider;

pub const SUBJECTS_TABLE: &str = "credit_subjects";

pub const DEMO_SUBJECTS: &[SubjectRow] = &[
    (
        1,
        "示例贸易有限公司",
        Some("91440101MA59XQ4T2K"),
        None,
        Some("91440101MA59XQ4T2K"),
    ),
    (
        2,
        "示例餐饮管理有限公司",
        Some("91440104MA5D0R7L3N"),
        None,
        Some("91440104MA5D0R7L3N"),
    ),
    (
        3,
        "示例装饰工程部",
        None,
        Some("610431198603210047"),
        Some("440104198603210047"),
    ),
];

/// Writes the simulator's credentials into `dir` and returns the provider sections and one
/// `[[query]]` per provider (penalties, customs, tax_blacklist) over the subjects table.
pub fn query_config(sim: &QuerySim, dir: &Path, budget: u32, job_extra: &str) -> Result<String> {
    let c = &sim.cfg;
    let file = |name: &str, v: &str| -> Result<String> {
        let p = dir.join(name);
        super::write_secret_file(&p, &format!("{v}\n"))?;
        Ok(p.display().to_string())
    };
    let mut s = format!(
        r#"
[shuidi]
url = "{}"
pname = "{}"
pkey_file = "{}"
daily_budget = {budget}

[qcc]
url = "{}"
key_file = "{}"
secret_key_file = "{}"
daily_budget = {budget}

[xinshu]
url = "{}"
apikey_file = "{}"
private_key_file = "{}"
daily_budget = {budget}
"#,
        sim.url(Provider::Shuidi),
        c.shuidi_pname,
        file("shuidi.pkey", &c.shuidi_pkey)?,
        sim.url(Provider::Qcc),
        file("qcc.key", &c.qcc_key)?,
        file("qcc.secret", &c.qcc_secret_key)?,
        sim.url(Provider::Xinshu),
        file("xinshu.apikey", &c.xinshu_apikey)?,
        file("xinshu.private", &c.xinshu_private_key)?,
    );
    for (name, provider, extra) in [
        ("penalties", "shuidi", ""),
        ("customs", "qcc", ""),
        (
            "tax_blacklist",
            "xinshu",
            "id_card_column = \"legal_id_card\"\ntax_no_column = \"tax_no\"\n",
        ),
    ] {
        let _ = write!(
            s,
            r#"
[[query]]
name = "{name}"
provider = "{provider}"
subjects = "{SUBJECTS_TABLE}"
name_column = "name"
uscc_column = "uscc"
{extra}fresh_for = "30d"
interval = "1h"
{job_extra}
"#
        );
    }
    Ok(s)
}

/// Sample answers: 45 penalties for subject 1 (three pages), none for subject 2; two customs
/// registrations for subject 1; a tax-blacklist record for subject 3.
pub fn load_fixtures(sim: &QuerySim) {
    let mut st = sim.state.lock().expect("sim state");
    let s1 = DEMO_SUBJECTS[0];
    let s3 = DEMO_SUBJECTS[2];
    st.set(
        Provider::Shuidi,
        s1.2.unwrap_or_default(),
        shuidi_records(45),
    );
    st.set(Provider::Qcc, s1.2.unwrap_or_default(), qcc_records(2, 1));
    st.set(
        Provider::Xinshu,
        s3.4.unwrap_or_default(),
        vec![xinshu_record(s3.1, s3.4.unwrap_or_default())],
    );
}

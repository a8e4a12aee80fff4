//! The `[shuidi]`, `[qcc]`, `[xinshu]` provider sections and `[[query]]` jobs, read with the
//! rest of the configuration in `crate::config::query`; re-exported here for the query code.

pub use crate::config::query::{
    HttpMethod, ParamsIn, QccConfig, QueryJobConfig, SearchBy, ShuidiConfig, XinshuConfig, warnings,
};

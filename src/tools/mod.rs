//! Tools around the product: `qianzhi demo`, `qianzhi bench`, and local simulators of the
//! provincial platforms (`qianzhi simulate`) and of the credit-query APIs. They drive the core
//! (pipeline, query, db, ...) the way a department's setup would; nothing in the core imports
//! them (ARCHITECTURE.md, "Module map"). The SQL they need is in `db::tools`.

pub mod bench;
pub mod demo;
pub mod query_demo;
pub mod query_sim;
pub mod simulate;

use anyhow::{Context, Result};
use std::path::Path;

use crate::config::Config;

/// Reads a config from text: the demo, the benchmark and the tests build theirs in memory.
pub fn config_from_str(text: &str) -> Result<Config> {
    crate::config::parse_with_env(text, &[]).context("config")
}

/// Writes a token or key file readable by its owner only (0600), as the README asks of the
/// real ones. The file is created with that mode, never widened then narrowed; a copy left by
/// an earlier demo run is removed first, since opening it would keep its old mode.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

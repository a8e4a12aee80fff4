//! qianzhi: change capture from a department database to provincial platform APIs.
//!
//! ARCHITECTURE.md at the repository root has the data flow, the module map, the layers
//! (arrows point down; the core never imports `tools`) and where to add a province, a credit
//! provider or a database backend.
//!
//! Invariants every module keeps:
//! - Only the `db` layer runs SQL (the tools' too: `db::tools`); only `upstream/*` and
//!   `query/*` know wire formats.
//! - `mapping`, `validate` and `batch` do no I/O and are tested table-driven.
//! - A change is never lost: the source position advances only in the same database
//!   transaction that stores the records it covers in the outbox (or as error rows).
//! - A record is never sent with different content under the same Cd_Batch: resends replay
//!   the outbox payload byte for byte.
//! - Two changes of one RowGuid are never in flight together, and a later one is sent only
//!   after the platform answered the earlier one (`pipeline::deliver`).
//! - Secrets never reach logs, errors or status output; ID and phone numbers are masked.
//! - One owner per job: every control-table transaction of a run checks the job's lease
//!   token first (`db::lease`), so a process that lost its lease commits nothing.

pub mod batch;
pub mod checkdigit;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod db;
pub mod failpoint;
pub mod http;
pub mod keysort;
pub mod lease;
pub mod mapping;
pub mod mask;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod progress;
pub mod query;
pub mod schema;
pub mod status;
pub mod telemetry;
pub mod timefmt;
pub mod tools;
pub mod upstream;
pub mod validate;
pub mod value;

//! A transient database error (deadlock, serialization failure, busy SQLite file) in a
//! control-table write is retried in place: forced through `QIANZHI_FAILPOINT=transient:..`,
//! which makes the server itself raise a deadlock inside the transaction (SQLite: an injected
//! BUSY_SNAPSHOT), the run still succeeds and stores everything once; past the bound the run
//! fails with the cause, and nothing of the failed write is stored.

use super::helpers::*;
use crate::on_all_backends;
use std::collections::HashSet;

const UNIT: &str = qianzhi::schema::sample::SAMPLE_UNIT;

/// What the failpoint raises on each backend, as the error shows it.
fn raised(which: Which) -> &'static str {
    match which.native() {
        Which::Mysql => "Deadlock found when trying to get lock (QIANZHI_FAILPOINT)",
        Which::Postgres => "deadlock detected (QIANZHI_FAILPOINT)",
        Which::Sqlite => "database is locked (Sqlite(517)), injected by QIANZHI_FAILPOINT",
        Which::OdbcPostgres | Which::OdbcMysql => unreachable!("native() is no ODBC one"),
    }
}

/// How the retry log line names the cause on each backend.
fn cause(which: Which) -> &'static str {
    match which.native() {
        Which::Mysql | Which::Postgres => "死锁 deadlock",
        Which::Sqlite => "数据库忙 database busy",
        Which::OdbcPostgres | Which::OdbcMysql => unreachable!("native() is no ODBC one"),
    }
}

/// `once` with the failpoint armed for `write`, `times` times; its stderr.
fn once_with(t: &TestApp, write: &str, times: u32) -> (std::process::ExitStatus, String) {
    let fp = format!("transient:{write}:{times}");
    let out = t.cli(
        &["once"],
        &[("QIANZHI_FAILPOINT", fp.as_str()), ("RUST_LOG", "info")],
    );
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rows `from..from + n` as inserts of valid accept samples.
async fn insert_range(t: &TestApp, from: i64, n: i64) {
    let samples: Vec<_> = (from..from + n).map(|id| t.sample("accept", id)).collect();
    let rows: Vec<_> = inserts(&samples)
        .into_iter()
        .zip(from..)
        .map(|(mut r, id)| {
            r.id = id;
            r
        })
        .collect();
    t.insert_rows("accept", &rows).await;
}

async fn each_write_retried(which: Which) {
    // One ack per call, so acks are their own transactions (ack_calls) besides the last
    // one, which closes the batch (finish_batch).
    let edit = |s: String| {
        s.replace(
            "retry_max = \"1s\"",
            "retry_max = \"1s\"\nack_every_calls = 1",
        )
    };
    let Some(t) = spawn_app(
        which,
        Spawn {
            edit: &edit,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let day = today_beijing();
    // 250 rows per round: three calls (99, 99, 52), so ack_calls runs twice per batch.
    for (round, write) in ["commit_exchange", "ack_calls", "finish_batch"]
        .into_iter()
        .enumerate()
    {
        let first = 1 + 250 * round as i64;
        insert_range(&t, first, 250).await;
        let (status, log) = once_with(&t, write, 2);
        assert!(status.success(), "{write}: {status:?}\n{log}");
        let retries: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("retrying the transaction"))
            .collect();
        assert_eq!(retries.len(), 2, "{write}: {log}");
        for l in &retries {
            assert!(l.contains(&format!("write={write}")), "{l}");
            assert!(l.contains(cause(which)) && l.contains(raised(which)), "{l}");
        }
        // The rolled-back transactions undid their sequence steps: this round's batch has
        // the next number, its records carry it, and the batch is closed.
        let cd_batch = format!("{UNIT}{day}{:05}", round + 1);
        let batches = t
            .rows("SELECT cd_batch, state, record_count, delivered_count FROM qz_batch ORDER BY cd_batch")
            .await;
        assert_eq!(batches.len(), round + 1, "{write}: {batches:?}");
        let last = &batches[round];
        let want = [
            Some(cd_batch.as_str()),
            Some("done"),
            Some("250"),
            Some("250"),
        ];
        assert_eq!(last.iter().map(Option::as_deref).collect::<Vec<_>>(), want);
        let got = t.accepted("accept");
        assert_eq!(got.len(), 250 * (round + 1), "{write}: nothing sent twice");
        let mine: Vec<_> = got[250 * round..].iter().collect();
        assert!(
            mine.iter()
                .all(|r| r["Cd_Batch"].as_str() == Some(cd_batch.as_str())),
            "{write}"
        );
        let guids: HashSet<&str> = got.iter().map(|r| r["RowGuid"].as_str().unwrap()).collect();
        assert_eq!(guids.len(), got.len(), "{write}: each row once");
        assert_eq!(
            t.scalar("SELECT COUNT(*) FROM qz_cursor WHERE last_error IS NOT NULL")
                .await,
            0,
            "{write}"
        );
    }
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_outbox").await, 0);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_reconciliation").await, 3);
}
on_all_backends!(
    a_transient_error_in_a_control_write_is_retried_in_place,
    each_write_retried
);

async fn gives_up_with_the_cause(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 150).await;
    let (status, log) = once_with(&t, "commit_exchange", 100);
    assert_eq!(status.code(), Some(1), "{log}");
    assert_eq!(
        log.matches("retrying the transaction").count(),
        7,
        "eight attempts: {log}"
    );
    let failed = log
        .lines()
        .find(|l| l.starts_with("accept: FAILED"))
        .unwrap_or_else(|| panic!("{log}"));
    for part in [
        "控制表写入 commit_exchange 重试 8 次后仍失败",
        "control-table write commit_exchange still failing after 8 attempts",
        cause(which),
        raised(which),
    ] {
        assert!(failed.contains(part), "{part}: {failed}");
    }
    // Nothing of the exchange was stored, the failure is on the job's cursor row.
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_batch").await, 0);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_outbox").await, 0);
    assert_eq!(t.sim.state.lock().unwrap().accepted_count, 0);
    let cursor = t
        .rows("SELECT position, last_error FROM qz_cursor WHERE job = 'accept'")
        .await;
    assert_eq!(cursor[0][0], None, "the position did not move");
    let last = cursor[0][1].clone().unwrap_or_default();
    assert!(last.contains("still failing after 8 attempts"), "{last}");

    // The database is well again: the same rows go out, under the first number of the day.
    let out = t.cli(&["once"], &[]);
    assert!(out.status.success(), "{out:?}");
    let got = t.accepted("accept");
    assert_eq!(got.len(), 150);
    let first = format!("{UNIT}{}00001", today_beijing());
    assert!(
        got.iter()
            .all(|r| r["Cd_Batch"].as_str() == Some(first.as_str()))
    );
}
on_all_backends!(
    a_control_write_that_keeps_failing_gives_up_with_its_cause,
    gives_up_with_the_cause
);

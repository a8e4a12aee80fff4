//! Delivery safety: nothing is acked that the platform did not accept, a refusal that is not
//! about content never turns the backlog into error rows, bad settings never panic, and the
//! outbox commit is durable.

use super::helpers::*;
use crate::on_all_backends;
use qianzhi::mapping::derive_row_guid;
use qianzhi::pipeline::JobStopped;
use qianzhi::tools::simulate::{REDIRECT_TARGET, Scripted};

fn stopped(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    assert!(err.downcast_ref::<JobStopped>().is_some(), "{text}");
    text
}

async fn pending_batches(t: &TestApp) -> Vec<String> {
    t.rows("SELECT cd_batch FROM qz_batch WHERE state = 'pending' ORDER BY cd_batch")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

fn paths(t: &TestApp) -> Vec<String> {
    let st = t.sim.state.lock().unwrap();
    st.calls.iter().map(|c| c.path.clone()).collect()
}

async fn redirect_is_not_acceptance(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 3).await;
    let to = format!("http://{}{REDIRECT_TARGET}", t.sim.addr);
    t.sim.state.lock().unwrap().script.push_back(Scripted {
        status: 302,
        location: Some(to.clone()),
        body: String::new(),
    });
    let text = stopped(&t.once("accept").await.unwrap_err());
    assert!(text.contains("HTTP 302") && text.contains(&to), "{text}");
    // The redirect was not followed, nothing was acked or reconciled.
    assert!(
        !paths(&t).iter().any(|p| p == REDIRECT_TARGET),
        "{:?}",
        paths(&t)
    );
    assert!(t.accepted("accept").is_empty());
    let pending = pending_batches(&t).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_outbox WHERE state = 'pending'")
            .await,
        1
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_reconciliation").await, 0);

    // The address is right again: the kept batch goes out under its own number.
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.batches, pending);
    let got = t.accepted("accept");
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|r| r["Cd_Batch"].as_str() == Some(pending[0].as_str()))
    );
}
on_all_backends!(
    a_redirect_is_never_taken_for_acceptance,
    redirect_is_not_acceptance
);

/// `max_in_flight` 1: the first call is split, then the next call is sent and decides.
async fn in_band_one_in_flight(which: Which) {
    in_band_auth_failure(which, 1, 2).await
}

/// `max_in_flight` 4: all three calls of the batch were on the wire before the first answer;
/// the first is split, and the next call's answer, already in, decides. The third is left.
async fn in_band_several_in_flight(which: Which) {
    in_band_auth_failure(which, 4, 3).await
}

/// `whole`: how many calls are sent as a whole before the job stops.
async fn in_band_auth_failure(which: Which, max_in_flight: usize, whole: usize) {
    let edit = in_flight(max_in_flight);
    let spawn = Spawn {
        edit: &edit,
        ..Default::default()
    };
    let Some(t) = spawn_app(which, spawn).await else {
        return;
    };
    // 250 rows: one batch of three calls (99, 99, 52).
    t.insert_many("accept", 250).await;
    let refusal = r#"{"errCode":"401","errMsg":"token无效"}"#;
    t.sim.state.lock().unwrap().answer_all = Some(Scripted {
        status: 200,
        location: None,
        body: refusal.into(),
    });
    let text = stopped(&t.once("accept").await.unwrap_err());
    assert!(
        text.contains("errCode 401: token无效") && text.contains("gdzw.fatal_err_codes"),
        "{text}"
    );
    // The first call was split down to single records (2 x 99 - 2 calls after the whole
    // one), the second call was refused the same way as a whole, and nothing more was sent.
    assert_eq!(t.sim.state.lock().unwrap().calls.len(), whole + 2 * 99 - 2);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_error").await, 0);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_outbox WHERE state = 'pending'")
            .await,
        3
    );
    let pending = pending_batches(&t).await;
    assert_eq!(pending.len(), 1);

    // The token is fixed on the gateway: every row goes out once, under the kept Cd_Batch.
    t.sim.state.lock().unwrap().answer_all = None;
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.refused_by_platform), (250, 0), "{o:?}");
    assert_eq!(o.batches, pending);
    let got = t.accepted("accept");
    assert_eq!(got.len(), 250);
    let mut guids: Vec<&str> = got.iter().map(|r| r["RowGuid"].as_str().unwrap()).collect();
    guids.sort();
    guids.dedup();
    assert_eq!(guids.len(), 250, "each row exactly once");
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_error").await, 0);
}
on_all_backends!(
    an_in_band_refusal_of_everything_stops_the_job,
    in_band_one_in_flight
);
on_all_backends!(
    an_in_band_refusal_of_everything_stops_the_job_with_calls_in_flight,
    in_band_several_in_flight
);

async fn fatal_codes_stop_at_once(which: Which) {
    fatal_codes_stop(which, 1).await
}

async fn fatal_codes_stop_with_calls_in_flight(which: Which) {
    fatal_codes_stop(which, 4).await
}

/// 120 rows are two calls: with one in flight only the first is sent; with more, both were
/// on the wire before the first answer, and nothing else is sent (no split, no resend).
async fn fatal_codes_stop(which: Which, max_in_flight: usize) {
    let edit = |s: String| {
        in_flight(max_in_flight)(s).replacen("[gdzw]\n", "[gdzw]\nfatal_err_codes = [\"401\"]\n", 1)
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
    t.insert_many("accept", 120).await;
    t.sim.state.lock().unwrap().answer_all = Some(Scripted {
        status: 200,
        location: None,
        body: r#"{"errCode":"401","errMsg":"token无效"}"#.into(),
    });
    stopped(&t.once("accept").await.unwrap_err());
    assert_eq!(
        t.sim.state.lock().unwrap().calls.len(),
        max_in_flight.min(2)
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM qz_error").await, 0);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_outbox WHERE state = 'pending'")
            .await,
        2
    );
}
on_all_backends!(
    listed_fatal_err_codes_stop_at_the_first_call,
    fatal_codes_stop_at_once
);
on_all_backends!(
    listed_fatal_err_codes_stop_sending_with_calls_in_flight,
    fatal_codes_stop_with_calls_in_flight
);

async fn alike_refusals_about_content(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    // Two calls (99 + 51); every record of the first is refused with one plain message, the
    // second call is accepted: the refusals were about content and stand.
    t.insert_many("accept", 150).await;
    {
        let mut st = t.sim.state.lock().unwrap();
        for id in 1..=99 {
            st.refuse_plain
                .insert(derive_row_guid("accept", &id.to_string()));
        }
    }
    let o = t.once("accept").await.unwrap();
    assert_eq!((o.delivered, o.refused_by_platform), (51, 99), "{o:?}");
    let errs = t
        .rows("SELECT rule, message FROM qz_error ORDER BY id")
        .await;
    assert_eq!(errs.len(), 99);
    assert!(
        errs.iter()
            .all(|e| e[0].as_deref() == Some("platform_rejected")
                && e[1].as_deref().unwrap().contains("数据校验不通过"))
    );
    assert!(pending_batches(&t).await.is_empty());
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_outbox WHERE state = 'pending'")
            .await,
        0
    );
}
on_all_backends!(
    alike_refusals_followed_by_an_acceptance_are_error_rows,
    alike_refusals_about_content
);

async fn bom_answers(which: Which) {
    let Some(t) = spawn_app(which, Spawn::default()).await else {
        return;
    };
    t.insert_many("accept", 2).await;
    t.sim.state.lock().unwrap().answer_prefix = "\u{feff}".into();
    let o = t.once("accept").await.unwrap();
    assert_eq!(o.delivered, 2);
    {
        let st = t.sim.state.lock().unwrap();
        // One data call and one reconciliation upload, each answered once with a BOM.
        assert_eq!(st.calls.len(), 2, "nothing resent");
        assert!(st.calls.iter().all(|c| c.answer.starts_with('\u{feff}')));
    }
    let up = t.rows("SELECT upload_state FROM qz_reconciliation").await;
    assert_eq!(up, vec![vec![Some("ok".into())]]);
}
on_all_backends!(
    a_success_answer_with_a_byte_order_mark_is_a_success,
    bom_answers
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(qianzhi_test_pg),
    ignore = "QIANZHI_TEST_PG not set: PostgreSQL suite off"
)]
async fn outbox_commits_are_durable_under_synchronous_commit_off() {
    require(Which::Postgres);
    let t = spawn_app(Which::Postgres, Spawn::default()).await.unwrap();
    let url = t.app.cfg.database.url.clone();
    let db_name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {db_name} SET synchronous_commit = off"
    )))
    .execute(&t.app.db.any)
    .await
    .unwrap();
    let db = qianzhi::db::Db::connect(&url, 2).await.unwrap();
    let show = "SHOW synchronous_commit";
    let mut plain = db.any.begin().await.unwrap();
    let default: String = sqlx::query_scalar(show)
        .fetch_one(&mut *plain)
        .await
        .unwrap();
    assert_eq!(
        default, "off",
        "the database default applies to a plain transaction"
    );
    plain.rollback().await.unwrap();
    let mut tx = db.begin_write().await.unwrap();
    let inside: String = sqlx::query_scalar(show).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(inside, "on");
    tx.rollback().await.unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_settings_are_reported_by_check_never_panic() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    let broken = t
        .cfg_text
        .replace(
            "retry_max = \"1s\"",
            "retry_max = \"1s\"\nhttp_timeout = \"99999999999999999999999\"",
        )
        .replace(
            "settle_lag = \"0s\"",
            "settle_lag = \"99999999999999999999d\"",
        )
        .replacen("[database]\n", "[database]\nmax_connections = 0\n", 1);
    std::fs::write(&t.cfg_path, &broken).unwrap();
    for cmd in ["check", "once"] {
        let out = t.cli(&[cmd], &[]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{cmd}: {text}");
        assert!(!text.contains("panicked"), "{cmd}: {text}");
        for key in ["http_timeout", "settle_lag", "max_connections"] {
            assert!(text.contains(key), "{cmd} names {key}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_task_is_logged_recorded_and_fails_run() {
    let t = spawn_app(Which::Sqlite, Spawn::default()).await.unwrap();
    let out = t.cli(
        &["run"],
        &[
            ("QIANZHI_FAILPOINT", "panic-in-job"),
            ("JOURNAL_STREAM", "8:1"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    // Under systemd the line carries journald's error priority, a Beijing timestamp, and no
    // colour codes (stderr is a pipe here).
    let stopped = err
        .lines()
        .find(|l| l.contains("JOB STOPPED") && l.contains("panicked"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        stopped.starts_with("<3>") && stopped.contains("+08:00"),
        "{stopped}"
    );
    assert!(!err.contains('\u{1b}'), "{err}");
    let last = t
        .rows("SELECT last_error FROM qz_cursor WHERE job = 'accept'")
        .await;
    assert!(
        last[0][0]
            .as_deref()
            .unwrap()
            .contains("failpoint panic-in-job"),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_with_code_3_when_every_job_has_stopped() {
    // A wrong token: the only job stops at its first call, so nothing is left to run and the
    // service manager must see a failure (Restart=on-failure), not a clean exit.
    let t = spawn_app(
        Which::Sqlite,
        Spawn {
            client_token: "wrong-token-x1",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    t.insert_many("accept", 1).await;
    let out = t.cli(&["run"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("JOB STOPPED") && err.contains("every job has stopped"),
        "{err}"
    );
    assert!(!err.contains("wrong-token-x1"), "{err}");
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM qz_batch WHERE state = 'pending'")
            .await,
        1,
        "the outbox is kept"
    );
}

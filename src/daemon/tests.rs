//! The supervisor, the schedules and the shutdown of `qianzhi run`, with fake jobs.

use super::when::{beijing, one_shot_delay};
use super::*;
use chrono::{Datelike, FixedOffset, Timelike, Utc, Weekday};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[tokio::test]
async fn a_panicking_task_is_reported_with_its_message() {
    let h = tokio::spawn(async { panic!("boom 13812345678") });
    let why = task_failure("accept", h.await.unwrap_err()).unwrap();
    assert!(
        why.contains("job accept panicked") && why.contains("boom 138****5678"),
        "{why}"
    );
    let h = tokio::spawn(std::future::pending::<()>());
    h.abort();
    assert_eq!(task_failure("accept", h.await.unwrap_err()), None);
}

#[test]
fn one_shot_delays_never_fall_short_of_the_interval() {
    let s = Duration::from_secs;
    for (interval, subsec, want) in [
        (s(30), 0, s(30)),
        (s(30), 1, s(31)),
        (s(30), 999_999_999, s(31)),
        (Duration::from_millis(1500), 400_000_000, s(2)),
        (Duration::from_millis(1500), 600_000_000, s(3)),
        (s(1), 0, s(1)),
    ] {
        let got = one_shot_delay(interval, subsec);
        assert_eq!(got, want, "{interval:?} at .{subsec}");
        // The library fires at floor(now) + got; that is never before now + interval.
        assert!(got >= interval + Duration::from_nanos(subsec.into()));
    }
}

#[test]
fn when_follows_the_setting_that_is_present() {
    assert_eq!(
        When::of(Some("0 0 2 * * *"), None),
        When::Cron("0 0 2 * * *".into())
    );
    assert_eq!(
        When::of(None, Some(Duration::from_secs(30))),
        When::Every(Duration::from_secs(30))
    );
}

#[test]
fn check_and_the_scheduler_accept_the_same_schedules() {
    for ok in [
        "0 */5 * * * *",
        "0 0 2 * * *",
        "0 30 9 * * MON-FRI",
        "0 0 0 13 * 5",
        "0 0 12 * * 0",
        "0 0 12 * * 7",
        "0 0 0 1 1 * 2030",
    ] {
        assert_eq!(cron_issue(ok), None, "{ok}");
    }
    for bad in ["every day", "0 0 2 * *", "61 * * * * *", "0 0 25 * * *", ""] {
        let why = cron_issue(bad);
        assert!(why.is_some_and(|w| !w.is_empty()), "{bad}");
    }
}

/// The next time the scheduler itself would fire a job with this schedule, in Beijing time.
async fn next_fire(expr: &str) -> chrono::DateTime<FixedOffset> {
    let mut sched = JobScheduler::new().await.unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let id = sched.add(cron_job(expr, tx, 0).unwrap()).await.unwrap();
    let t = sched.next_tick_for_job(id).await.unwrap().unwrap();
    t.with_timezone(&beijing())
}

#[tokio::test]
async fn cron_times_are_beijing_time_with_day_of_month_and_day_of_week() {
    // 02:00 Beijing is 18:00 UTC the day before, whatever the host's TZ is.
    let t = next_fire("0 0 2 * * *").await;
    assert_eq!((t.hour(), t.minute(), t.second()), (2, 0, 0), "{t}");
    assert_eq!(t.with_timezone(&Utc).hour(), 18, "{t}");
    assert!(t - Utc::now().with_timezone(&beijing()) <= chrono::Duration::days(1));
    // Day of month AND day of week: a Friday the 13th, not every 13th and every Friday.
    let t = next_fire("0 0 0 13 * FRI").await;
    assert_eq!((t.day(), t.weekday()), (13, Weekday::Fri), "{t}");
    let t = next_fire("0 0 0 13 * 5").await;
    assert_eq!((t.day(), t.weekday()), (13, Weekday::Fri), "{t}");
    // Weekday numbers: 0 and 7 are Sunday, 1 is Monday.
    for (expr, day) in [
        ("0 0 12 * * 0", Weekday::Sun),
        ("0 0 12 * * 7", Weekday::Sun),
        ("0 0 12 * * 1", Weekday::Mon),
        ("0 0 12 * * SAT", Weekday::Sat),
    ] {
        let t = next_fire(expr).await;
        assert_eq!((t.weekday(), t.hour()), (day, 12), "{expr}: {t}");
    }
}

/// A job that counts its starts and how many of its runs were going at once, made of
/// `calls` calls of `call` each; like the pipeline, it checks the token between calls.
#[derive(Default)]
struct Probe {
    starts: Mutex<Vec<Instant>>,
    ends: Mutex<Vec<Instant>>,
    now_running: AtomicUsize,
    most_running: AtomicUsize,
    calls_begun: AtomicUsize,
    calls_done: AtomicUsize,
}

fn probe_work(p: Arc<Probe>, calls: usize, call: Duration) -> Work {
    Arc::new(move |cancel: CancellationToken, _| {
        let p = p.clone();
        Box::pin(async move {
            p.starts.lock().unwrap().push(Instant::now());
            let n = p.now_running.fetch_add(1, Ordering::SeqCst) + 1;
            p.most_running.fetch_max(n, Ordering::SeqCst);
            for _ in 0..calls {
                if cancel.is_cancelled() {
                    break;
                }
                p.calls_begun.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(call).await;
                p.calls_done.fetch_add(1, Ordering::SeqCst);
            }
            p.now_running.fetch_sub(1, Ordering::SeqCst);
            p.ends.lock().unwrap().push(Instant::now());
            Ended::Again
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_never_overlaps_itself_and_shutdown_is_prompt() {
    // Every second, but each run takes 2.5 s (five calls of 0.5 s).
    let p = Arc::new(Probe::default());
    let cancel = CancellationToken::new();
    let entries = vec![Entry {
        name: "slow".into(),
        when: When::Cron("* * * * * *".into()),
        work: probe_work(p.clone(), 5, Duration::from_millis(500)),
    }];
    let sup = tokio::spawn(supervise(
        entries,
        cancel.clone(),
        None,
        |_, _| async {},
        Heartbeat::quiet(),
    ));
    tokio::time::sleep(Duration::from_millis(6800)).await;
    let before = p.starts.lock().unwrap().len();
    let stop = Instant::now();
    cancel.cancel();
    let crashed = tokio::time::timeout(Duration::from_secs(3), sup)
        .await
        .expect("supervise returns soon after the cancel")
        .unwrap()
        .unwrap();
    let took = stop.elapsed();
    assert!(crashed.is_empty());
    assert_eq!(p.most_running.load(Ordering::SeqCst), 1, "runs overlapped");
    let starts = p.starts.lock().unwrap().clone();
    let ends = p.ends.lock().unwrap().clone();
    // Ticks came every second; only those after a run ended started one: 2 or 3 in 6.8 s,
    // where overlapping runs would have started about 6.
    assert!((2..=3).contains(&starts.len()), "{} starts", starts.len());
    for (end, next) in ends.iter().zip(starts.iter().skip(1)) {
        assert!(next >= end, "a run started before the previous one ended");
    }
    // The call in flight finished; nothing started after the cancel.
    assert_eq!(starts.len(), before);
    assert_eq!(
        p.calls_begun.load(Ordering::SeqCst),
        p.calls_done.load(Ordering::SeqCst)
    );
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_job_runs_at_once_then_waits_the_interval_after_each_run() {
    // Runs take 1.2 s; the interval is 1 s from the end of a run, not from its start.
    let p = Arc::new(Probe::default());
    let cancel = CancellationToken::new();
    let begin = Instant::now();
    let entries = vec![Entry {
        name: "every".into(),
        when: When::Every(Duration::from_secs(1)),
        work: probe_work(p.clone(), 3, Duration::from_millis(400)),
    }];
    let sup = tokio::spawn(supervise(
        entries,
        cancel.clone(),
        None,
        |_, _| async {},
        Heartbeat::quiet(),
    ));
    tokio::time::sleep(Duration::from_millis(5500)).await;
    cancel.cancel();
    sup.await.unwrap().unwrap();
    let starts = p.starts.lock().unwrap().clone();
    let ends = p.ends.lock().unwrap().clone();
    assert!(
        starts[0] - begin < Duration::from_millis(800),
        "first run at once"
    );
    assert!(starts.len() >= 2, "{} starts", starts.len());
    for (end, next) in ends.iter().zip(starts.iter().skip(1)) {
        let gap = *next - *end;
        assert!(
            gap >= Duration::from_secs(1) && gap < Duration::from_millis(3000),
            "gap {gap:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_and_panicking_jobs_end_the_run_and_only_panics_count_as_crashes() {
    let fatal_runs = Arc::new(AtomicUsize::new(0));
    let f = fatal_runs.clone();
    let fatal: Work = Arc::new(move |_, _| {
        f.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ended::Stopped })
    });
    let boom: Work = Arc::new(|_, _| Box::pin(async { panic!("boom 13812345678") }));
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let r = recorded.clone();
    let entries = vec![
        Entry {
            name: "fatal".into(),
            when: When::Cron("* * * * * *".into()),
            work: fatal,
        },
        Entry {
            name: "boom".into(),
            when: When::Every(Duration::from_secs(1)),
            work: boom,
        },
    ];
    // No cancel: the run ends by itself once both jobs have stopped.
    let crashed = tokio::time::timeout(
        Duration::from_secs(10),
        supervise(
            entries,
            CancellationToken::new(),
            None,
            move |job, why| {
                r.lock().unwrap().push((job, why));
                async {}
            },
            Heartbeat::quiet(),
        ),
    )
    .await
    .expect("run ends when every job has stopped")
    .unwrap();
    assert_eq!(crashed, vec!["boom".to_string()]);
    let recorded = recorded.lock().unwrap();
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0].1.contains("boom 138****5678"), "{recorded:?}");
    assert_eq!(
        fatal_runs.load(Ordering::SeqCst),
        1,
        "a stopped job runs no more"
    );
}

#[tokio::test]
async fn a_schedule_the_scheduler_refuses_fails_the_run_naming_the_job() {
    let entries = vec![Entry {
        name: "nightly".into(),
        when: When::Cron("every night".into()),
        work: Arc::new(|_, _| Box::pin(async { Ended::Again })),
    }];
    let e = supervise(
        entries,
        CancellationToken::new(),
        None,
        |_, _| async {},
        Heartbeat::quiet(),
    )
    .await
    .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("nightly") && text.contains("every night"),
        "{text}"
    );
}

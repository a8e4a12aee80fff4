//! Golden SQL of the control-table statements and their per-row values.

use super::sql::*;
use super::*;
use crate::db::Backend;
use chrono::TimeZone;
use sea_query_sqlx::SqlxBinder;

const BACKENDS: [Backend; 3] = [Backend::Postgres, Backend::Mysql, Backend::Sqlite];

fn render<S: SqlxBinder>(s: &S) -> [(String, usize); 3] {
    BACKENDS.map(|b| {
        let (sql, v) = b.build(s);
        (sql, v.0.0.len())
    })
}

/// Golden SQL of the control-table statements: statement × backend (PostgreSQL, MySQL,
/// SQLite) → text, and how many values are bound.
#[test]
fn control_statements_per_backend() {
    let at = chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2025, 1, 2, 3, 4, 5)
        .unwrap();
    let batch = NewBatch {
        upstream: "gdzw",
        data_type: "accept",
        table_name: "t",
        unit_code: "u",
        at,
    };
    let cases = [
        (
            "cursor upsert",
            render(&cursor_upsert("j", "p", "n", 3)),
            [
                r#"INSERT INTO "qz_cursor" ("job", "position", "updated_at", "exchange_no") VALUES ($1, $2, $3, $4) ON CONFLICT ("job") DO UPDATE SET "position" = "excluded"."position", "updated_at" = "excluded"."updated_at", "exchange_no" = "excluded"."exchange_no""#,
                r#"INSERT INTO `qz_cursor` (`job`, `position`, `updated_at`, `exchange_no`) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE `position` = VALUES(`position`), `updated_at` = VALUES(`updated_at`), `exchange_no` = VALUES(`exchange_no`)"#,
                r#"INSERT INTO "qz_cursor" ("job", "position", "updated_at", "exchange_no") VALUES (?, ?, ?, ?) ON CONFLICT ("job") DO UPDATE SET "position" = "excluded"."position", "updated_at" = "excluded"."updated_at", "exchange_no" = "excluded"."exchange_no""#,
            ],
            4,
        ),
        (
            "position upsert",
            render(&position_upsert("j", "p", "n")),
            [
                r#"INSERT INTO "qz_cursor" ("job", "position", "updated_at") VALUES ($1, $2, $3) ON CONFLICT ("job") DO UPDATE SET "position" = "excluded"."position", "updated_at" = "excluded"."updated_at""#,
                r#"INSERT INTO `qz_cursor` (`job`, `position`, `updated_at`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE `position` = VALUES(`position`), `updated_at` = VALUES(`updated_at`)"#,
                r#"INSERT INTO "qz_cursor" ("job", "position", "updated_at") VALUES (?, ?, ?) ON CONFLICT ("job") DO UPDATE SET "position" = "excluded"."position", "updated_at" = "excluded"."updated_at""#,
            ],
            3,
        ),
        (
            "run succeeded",
            render(&run_upsert("j", "n", None)),
            [
                r#"INSERT INTO "qz_cursor" ("job", "last_run_at", "last_success_at", "last_error", "last_run_result") VALUES ($1, $2, $3, NULL, $4) ON CONFLICT ("job") DO UPDATE SET "retrying_since" = NULL, "retry_last_at" = NULL, "retry_failures" = NULL, "retry_error" = NULL, "last_run_at" = "excluded"."last_run_at", "last_success_at" = "excluded"."last_success_at", "last_run_result" = "excluded"."last_run_result", "last_error" = NULL"#,
                r#"INSERT INTO `qz_cursor` (`job`, `last_run_at`, `last_success_at`, `last_error`, `last_run_result`) VALUES (?, ?, ?, NULL, ?) ON DUPLICATE KEY UPDATE `retrying_since` = NULL, `retry_last_at` = NULL, `retry_failures` = NULL, `retry_error` = NULL, `last_run_at` = VALUES(`last_run_at`), `last_success_at` = VALUES(`last_success_at`), `last_run_result` = VALUES(`last_run_result`), `last_error` = NULL"#,
                r#"INSERT INTO "qz_cursor" ("job", "last_run_at", "last_success_at", "last_error", "last_run_result") VALUES (?, ?, ?, NULL, ?) ON CONFLICT ("job") DO UPDATE SET "retrying_since" = NULL, "retry_last_at" = NULL, "retry_failures" = NULL, "retry_error" = NULL, "last_run_at" = "excluded"."last_run_at", "last_success_at" = "excluded"."last_success_at", "last_run_result" = "excluded"."last_run_result", "last_error" = NULL"#,
            ],
            4,
        ),
        (
            "run failed",
            render(&run_upsert("j", "n", Some("e"))),
            [
                r#"INSERT INTO "qz_cursor" ("job", "last_run_at", "last_error", "last_run_result") VALUES ($1, $2, $3, $4) ON CONFLICT ("job") DO UPDATE SET "retrying_since" = NULL, "retry_last_at" = NULL, "retry_failures" = NULL, "retry_error" = NULL, "last_run_at" = "excluded"."last_run_at", "last_error" = "excluded"."last_error", "last_run_result" = "excluded"."last_run_result""#,
                r#"INSERT INTO `qz_cursor` (`job`, `last_run_at`, `last_error`, `last_run_result`) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE `retrying_since` = NULL, `retry_last_at` = NULL, `retry_failures` = NULL, `retry_error` = NULL, `last_run_at` = VALUES(`last_run_at`), `last_error` = VALUES(`last_error`), `last_run_result` = VALUES(`last_run_result`)"#,
                r#"INSERT INTO "qz_cursor" ("job", "last_run_at", "last_error", "last_run_result") VALUES (?, ?, ?, ?) ON CONFLICT ("job") DO UPDATE SET "retrying_since" = NULL, "retry_last_at" = NULL, "retry_failures" = NULL, "retry_error" = NULL, "last_run_at" = "excluded"."last_run_at", "last_error" = "excluded"."last_error", "last_run_result" = "excluded"."last_run_result""#,
            ],
            4,
        ),
        (
            "day sequence step",
            render(&seq_step("u", "d")),
            [
                r#"INSERT INTO "qz_batch_seq" ("unit_code", "batch_date", "last_seq") VALUES ($1, $2, 1) ON CONFLICT ("unit_code", "batch_date") DO UPDATE SET "last_seq" = "qz_batch_seq"."last_seq" + 1"#,
                r#"INSERT INTO `qz_batch_seq` (`unit_code`, `batch_date`, `last_seq`) VALUES (?, ?, 1) ON DUPLICATE KEY UPDATE `last_seq` = `qz_batch_seq`.`last_seq` + 1"#,
                r#"INSERT INTO "qz_batch_seq" ("unit_code", "batch_date", "last_seq") VALUES (?, ?, 1) ON CONFLICT ("unit_code", "batch_date") DO UPDATE SET "last_seq" = "qz_batch_seq"."last_seq" + 1"#,
            ],
            2,
        ),
        (
            "batch",
            render(&batch_insert("b", "j", &batch, 3, "t", "n", 4)),
            [
                r#"INSERT INTO "qz_batch" ("cd_batch", "job", "upstream", "data_type", "table_name", "state", "record_count", "cd_time", "created_at", "exchange_no") VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9)"#,
                r#"INSERT INTO `qz_batch` (`cd_batch`, `job`, `upstream`, `data_type`, `table_name`, `state`, `record_count`, `cd_time`, `created_at`, `exchange_no`) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)"#,
                r#"INSERT INTO "qz_batch" ("cd_batch", "job", "upstream", "data_type", "table_name", "state", "record_count", "cd_time", "created_at", "exchange_no") VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)"#,
            ],
            9,
        ),
        (
            "outbox call",
            render(&outbox_insert()),
            [
                r#"INSERT INTO "qz_outbox" ("cd_batch", "call_no", "record_count", "records", "body", "state") VALUES ($1, $2, $3, $4, $5, 'pending')"#,
                r#"INSERT INTO `qz_outbox` (`cd_batch`, `call_no`, `record_count`, `records`, `body`, `state`) VALUES (?, ?, ?, ?, ?, 'pending')"#,
                r#"INSERT INTO "qz_outbox" ("cd_batch", "call_no", "record_count", "records", "body", "state") VALUES (?, ?, ?, ?, ?, 'pending')"#,
            ],
            5,
        ),
        (
            "two error rows",
            render(&error_insert(2)),
            [
                r#"INSERT INTO "qz_error" ("job", "source_key", "row_guid", "operation", "field", "rule", "message", "cd_batch", "created_at", "resolved_at", "resolved_by", "exchange_no") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12), ($13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"#,
                r#"INSERT INTO `qz_error` (`job`, `source_key`, `row_guid`, `operation`, `field`, `rule`, `message`, `cd_batch`, `created_at`, `resolved_at`, `resolved_by`, `exchange_no`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"#,
                r#"INSERT INTO "qz_error" ("job", "source_key", "row_guid", "operation", "field", "rule", "message", "cd_batch", "created_at", "resolved_at", "resolved_by", "exchange_no") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"#,
            ],
            24,
        ),
        (
            "resolve errors",
            render(&resolve_errors_update("n", "b", "j", 4, &["k1", "k2"])),
            [
                r#"UPDATE "qz_error" SET "resolved_at" = $1, "resolved_by" = $2 WHERE "job" = $3 AND "resolved_at" IS NULL AND ("cd_batch" IS NULL OR "cd_batch" <> $4) AND ("exchange_no" IS NULL OR "exchange_no" < $5) AND "source_key" IN ($6, $7)"#,
                r#"UPDATE `qz_error` SET `resolved_at` = ?, `resolved_by` = ? WHERE `job` = ? AND `resolved_at` IS NULL AND (`cd_batch` IS NULL OR `cd_batch` <> ?) AND (`exchange_no` IS NULL OR `exchange_no` < ?) AND `source_key` IN (?, ?)"#,
                r#"UPDATE "qz_error" SET "resolved_at" = ?, "resolved_by" = ? WHERE "job" = ? AND "resolved_at" IS NULL AND ("cd_batch" IS NULL OR "cd_batch" <> ?) AND ("exchange_no" IS NULL OR "exchange_no" < ?) AND "source_key" IN (?, ?)"#,
            ],
            7,
        ),
        (
            "ack calls",
            render(&ack_update("b", [1, 2])),
            [
                r#"UPDATE "qz_outbox" SET "state" = 'acked' WHERE "cd_batch" = $1 AND "call_no" IN ($2, $3)"#,
                r#"UPDATE `qz_outbox` SET `state` = 'acked' WHERE `cd_batch` = ? AND `call_no` IN (?, ?)"#,
                r#"UPDATE "qz_outbox" SET "state" = 'acked' WHERE "cd_batch" = ? AND "call_no" IN (?, ?)"#,
            ],
            3,
        ),
        (
            "pending batches",
            render(&pending_batches_select("j")),
            [
                r#"SELECT "cd_batch", "data_type", "table_name", "record_count", "cd_time", "created_at", "exchange_no" FROM "qz_batch" WHERE "job" = $1 AND "state" = 'pending' ORDER BY "created_at" ASC, "cd_batch" ASC"#,
                r#"SELECT `cd_batch`, `data_type`, `table_name`, `record_count`, `cd_time`, `created_at`, `exchange_no` FROM `qz_batch` WHERE `job` = ? AND `state` = 'pending' ORDER BY `created_at` ASC, `cd_batch` ASC"#,
                r#"SELECT "cd_batch", "data_type", "table_name", "record_count", "cd_time", "created_at", "exchange_no" FROM "qz_batch" WHERE "job" = ? AND "state" = 'pending' ORDER BY "created_at" ASC, "cd_batch" ASC"#,
            ],
            1,
        ),
        (
            "batch done",
            render(&batch_done_update("b", 1, 2, "n", None, None)),
            [
                r#"UPDATE "qz_batch" SET "state" = 'done', "delivered_count" = $1, "rejected_count" = $2, "done_at" = $3, "platform_batch_num" = $4, "platform_id" = $5 WHERE "cd_batch" = $6"#,
                r#"UPDATE `qz_batch` SET `state` = 'done', `delivered_count` = ?, `rejected_count` = ?, `done_at` = ?, `platform_batch_num` = ?, `platform_id` = ? WHERE `cd_batch` = ?"#,
                r#"UPDATE "qz_batch" SET "state" = 'done', "delivered_count" = ?, "rejected_count" = ?, "done_at" = ?, "platform_batch_num" = ?, "platform_id" = ? WHERE "cd_batch" = ?"#,
            ],
            6,
        ),
        (
            "pending calls",
            render(&pending_calls_select("j")),
            [
                r#"SELECT "o"."record_count" FROM "qz_outbox" AS "o" INNER JOIN "qz_batch" AS "b" ON "b"."cd_batch" = "o"."cd_batch" WHERE "b"."job" = $1 AND "o"."state" = 'pending'"#,
                r#"SELECT `o`.`record_count` FROM `qz_outbox` AS `o` INNER JOIN `qz_batch` AS `b` ON `b`.`cd_batch` = `o`.`cd_batch` WHERE `b`.`job` = ? AND `o`.`state` = 'pending'"#,
                r#"SELECT "o"."record_count" FROM "qz_outbox" AS "o" INNER JOIN "qz_batch" AS "b" ON "b"."cd_batch" = "o"."cd_batch" WHERE "b"."job" = ? AND "o"."state" = 'pending'"#,
            ],
            1,
        ),
    ];

    for (name, got, want, binds) in cases {
        for ((b, got), want) in BACKENDS.iter().zip(got).zip(want) {
            assert_eq!(got, (want.to_string(), binds), "{name} on {b:?}");
        }
    }
}

/// The outbox and error inserts are rendered once and bound per row: the values given
/// per row must fill exactly the placeholders, in column order.
#[test]
fn per_row_values_fill_the_rendered_placeholders() {
    let call = OutboxCall {
        call_no: 3,
        body: Body::new("{}".into()),
        records: vec![RecordMeta {
            source_key: "k".into(),
            row_guid: "g".into(),
            operation: "I".into(),
        }],
        done: Default::default(),
    };
    // What each value is, is checked end to end (the outbox rows the e2e tests read).
    let args = outbox_args("B1", &call).unwrap();
    assert_eq!(sqlx::Arguments::len(&args), render(&outbox_insert())[0].1);
    let e = ErrorRow {
        source_key: "k".into(),
        row_guid: None,
        operation: Some("U".into()),
        field: "Phone".into(),
        rule: "format".into(),
        message: "13800138000 is not valid".into(),
        superseded: true,
    };
    let mut values = Vec::new();
    error_values(&mut values, "j", &e, (Some("B1"), Some(4)), "now");
    error_values(&mut values, "j", &e, (None, None), "now");
    assert_eq!(values.len(), render(&error_insert(2))[0].1);
    let col = |c: &str| ERROR_COLS.iter().position(|x| *x == c).unwrap();
    assert_eq!(values[col("exchange_no")], Value::from(4i64));
    // Superseded: resolved at once by the batch it went out with.
    assert_eq!(values[col("resolved_by")], Value::from("B1"));
    assert_eq!(values[col("resolved_at")], Value::from("now"));
    let second = ERROR_COLS.len();
    assert_eq!(values[second + col("resolved_by")], Value::String(None));
    // The mobile number in the message is masked before it is stored.
    let Value::String(Some(msg)) = &values[col("message")] else {
        panic!("message is text");
    };
    assert!(!msg.contains("13800138000"), "{msg}");
}

//! SQL that the tools (demo, bench) and the end-to-end tests run on a department database of
//! their own making: change tables filled with sample rows, the credit-query subjects table,
//! scratch databases, and plain reads for assertions. Statements that differ by backend are
//! built with sea-query; nothing outside `db/` runs SQL (ARCHITECTURE.md, "Invariants").
//!
//! Values are written as literals of the backend's dialect (sea-query escapes them), not bound:
//! a bound text parameter is typed `text` on PostgreSQL and is refused by a TIMESTAMP or
//! NUMERIC column, while a literal is converted as it would be in a DBA's own script.

use anyhow::{Context, Result, bail};
use sea_query::{
    ColumnDef, Index, IndexCreateStatement, InsertStatement, MysqlQueryBuilder,
    PostgresQueryBuilder, Query, SimpleExpr, SqliteQueryBuilder, Table, TableCreateStatement,
    Value,
};

use super::dialect::Family;
use super::{Backend, Db};
use crate::schema::sample::{Lit, sample_columns};
use crate::schema::{DataType, FieldType};

/// Rows per INSERT: a few hundred kilobytes of text at most, far below every server's limit.
const ROWS_PER_INSERT: usize = 500;

/// One change-table row: the key `id`, the operation, the change time and the field values.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRow<'a> {
    pub id: i64,
    /// `I`, `U` or `D`.
    pub op: &'a str,
    /// `yyyy-MM-dd HH:mm:ss`, Beijing time.
    pub cd_time: &'a str,
    pub fields: &'a [(String, Lit)],
}

/// One subject of a credit-query view: (id, name, 统一社会信用代码, 法人身份证号, 税务登记号).
pub type SubjectRow = (
    i64,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

/// A name as an unquoted identifier in a DBA's DDL becomes: PostgreSQL folds it to lower case,
/// MySQL and SQLite keep it. sea-query quotes every name, so the folding is done here; the
/// tests and the README's examples then address the columns unquoted, as DBAs do.
fn column(backend: Backend, name: &str) -> String {
    match backend.family() {
        Some(Family::Postgres) => name.to_ascii_lowercase(),
        Some(Family::Mysql) | None => name.to_string(),
        Some(Family::Oracle) => name.to_ascii_uppercase(),
    }
}

/// The text of a CREATE TABLE in the backend's dialect.
fn table_sql(backend: Backend, t: &TableCreateStatement) -> String {
    match backend.family() {
        Some(Family::Postgres) => t.to_string(PostgresQueryBuilder),
        Some(Family::Mysql) => t.to_string(MysqlQueryBuilder),
        None => t.to_string(SqliteQueryBuilder),
        // sea-query has no schema builder for them; the tools (demo, bench, tests) make no
        // tables on DM or Oracle.
        Some(Family::Oracle) => panic!("the tools make no tables on DM or Oracle"),
    }
}

/// The text of a CREATE INDEX in the backend's dialect.
fn index_sql(backend: Backend, i: &IndexCreateStatement) -> String {
    match backend.family() {
        Some(Family::Postgres) => i.to_string(PostgresQueryBuilder),
        Some(Family::Mysql) => i.to_string(MysqlQueryBuilder),
        None => i.to_string(SqliteQueryBuilder),
        Some(Family::Oracle) => panic!("the tools make no tables on DM or Oracle"),
    }
}

/// The text of an INSERT in the backend's dialect, values inlined and escaped.
fn insert_sql(backend: Backend, stmt: &InsertStatement) -> String {
    match backend.family() {
        Some(Family::Postgres) => stmt.to_string(PostgresQueryBuilder),
        Some(Family::Mysql) => stmt.to_string(MysqlQueryBuilder),
        None => stmt.to_string(SqliteQueryBuilder),
        Some(Family::Oracle) => stmt.to_string(super::oracle::OracleQueryBuilder),
    }
}

/// A MySQL table without an explicit character set takes the server's default, which is
/// latin1 on MariaDB; Chinese sample text needs utf8mb4. Other backends have no such option.
fn utf8_table(backend: Backend, t: &mut TableCreateStatement) {
    if backend == Backend::Mysql {
        t.character_set("utf8mb4");
    }
}

fn value(l: &Lit) -> SimpleExpr {
    SimpleExpr::Value(match l {
        Lit::Null => Value::String(None),
        Lit::Text(s) => Value::String(Some(s.clone())),
        Lit::Int(i) => Value::BigInt(Some(*i)),
        Lit::Num(f) => Value::Double(Some(*f)),
    })
}

fn text(s: Option<&str>) -> SimpleExpr {
    SimpleExpr::Value(Value::String(s.map(str::to_string)))
}

/// CREATE TABLE and its index for a change table of `dt`: `change_id` (auto-increment),
/// `id`, one column per field a department supplies (named as the field code, so a job's
/// mapping is the identity), `cd_time` and `cd_operation`, indexed on (cd_time, change_id).
pub fn change_table_ddl(backend: Backend, dt: &DataType, table: &str) -> Vec<String> {
    let col = |name: &str| column(backend, name);
    let mut t = Table::create();
    t.table(table.to_string())
        .col(
            ColumnDef::new(col("change_id"))
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(ColumnDef::new(col("id")).big_integer().not_null());
    for f in sample_columns(dt) {
        let mut c = ColumnDef::new(col(&f.code));
        match (f.ty, f.max_len) {
            (FieldType::Int, _) => c.big_integer(),
            (FieldType::Number, _) => c.decimal_len(18, 2),
            (FieldType::Datetime | FieldType::Date, _) => c.date_time(),
            // Twice the spec's length, so an over-long value reaches qianzhi's own check
            // instead of being refused by the database; long texts are TEXT, since MySQL caps
            // the VARCHARs of one row at 64 KiB.
            (FieldType::String, Some(n)) if n <= 255 => c.string_len(n.max(1) * 2),
            (FieldType::String, _) => c.text(),
        };
        t.col(c);
    }
    t.col(ColumnDef::new(col("cd_time")).date_time().not_null())
        .col(ColumnDef::new(col("cd_operation")).char_len(1).not_null());
    utf8_table(backend, &mut t);
    let mut index = Index::create();
    index
        .name(format!("{table}_ct"))
        .table(table.to_string())
        .col(col("cd_time"))
        .col(col("change_id"));
    vec![table_sql(backend, &t), index_sql(backend, &index)]
}

/// INSERTs of `rows` into a change table: consecutive rows with the same fields share one
/// statement (up to `ROWS_PER_INSERT`).
pub fn insert_change_rows_sql(backend: Backend, table: &str, rows: &[ChangeRow]) -> Vec<String> {
    let names =
        |r: &ChangeRow| -> Vec<String> { r.fields.iter().map(|(c, _)| c.clone()).collect() };
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let fields = names(&rows[start]);
        let mut end = start + 1;
        while end < rows.len() && end - start < ROWS_PER_INSERT && names(&rows[end]) == fields {
            end += 1;
        }
        let mut stmt = Query::insert();
        stmt.into_table(table.to_string()).columns(
            std::iter::once("id".to_string())
                .chain(fields.iter().cloned())
                .chain(["cd_time".to_string(), "cd_operation".to_string()])
                .map(|c| column(backend, &c)),
        );
        for r in &rows[start..end] {
            let values = std::iter::once(value(&Lit::Int(r.id)))
                .chain(r.fields.iter().map(|(_, v)| value(v)))
                .chain([text(Some(r.cd_time)), text(Some(r.op))]);
            stmt.values_panic(values);
        }
        out.push(insert_sql(backend, &stmt));
        start = end;
    }
    out
}

/// The subjects table a department would expose as a view over its registry, and its rows.
pub fn subjects_table_sql(backend: Backend, table: &str, rows: &[SubjectRow]) -> Vec<String> {
    let col = |name: &str| column(backend, name);
    let mut t = Table::create();
    t.table(table.to_string())
        .col(
            ColumnDef::new(col("id"))
                .big_integer()
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(col("name")).string_len(200).not_null())
        .col(ColumnDef::new(col("uscc")).string_len(18))
        .col(ColumnDef::new(col("legal_id_card")).string_len(18))
        .col(ColumnDef::new(col("tax_no")).string_len(30));
    utf8_table(backend, &mut t);
    let mut out = vec![table_sql(backend, &t)];
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut stmt = Query::insert();
        stmt.into_table(table.to_string())
            .columns(["id", "name", "uscc", "legal_id_card", "tax_no"].map(col));
        for r in chunk {
            stmt.values_panic([
                value(&Lit::Int(r.0)),
                text(Some(r.1)),
                text(r.2),
                text(r.3),
                text(r.4),
            ]);
        }
        out.push(insert_sql(backend, &stmt));
    }
    out
}

/// `url` with its database replaced by `name`; the query string (sslmode, ...) is kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host = match base[scheme_end..].find('/') {
        Some(s) => &base[..s + scheme_end],
        None => base,
    };
    format!("{host}/{name}{query}")
}

/// A scratch database's name goes into DDL unquoted: letters, digits and `_` only.
fn database_name(name: &str) -> Result<&str> {
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("'{name}' is not a plain database name");
    }
    Ok(name)
}

async fn admin_pool(server_url: &str) -> Result<sqlx::AnyPool> {
    super::install_drivers();
    sqlx::AnyPool::connect(server_url)
        .await
        .with_context(|| format!("cannot connect to {}", super::redact_url(server_url)))
}

/// Creates database `name` on the PostgreSQL or MySQL server of `server_url` (dropping an
/// earlier one of that name when `replace`), and returns the URL that reaches it.
pub async fn create_database(server_url: &str, name: &str, replace: bool) -> Result<String> {
    let name = database_name(name)?;
    let admin = admin_pool(server_url).await?;
    if replace {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&admin)
        .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .with_context(|| format!("cannot create database {name}"))?;
    admin.close().await;
    Ok(with_database(server_url, name))
}

/// Drops database `name`, ending PostgreSQL sessions still connected to it.
pub async fn drop_database(server_url: &str, name: &str) -> Result<()> {
    let name = database_name(name)?;
    let force = match Backend::from_url(server_url)? {
        Backend::Postgres => " WITH (FORCE)",
        Backend::Mysql | Backend::Sqlite | Backend::Odbc(_) => "",
    };
    let admin = admin_pool(server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}{force}"
    )))
    .execute(&admin)
    .await?;
    admin.close().await;
    Ok(())
}

impl Db {
    /// Runs statements one by one, each used once (no prepared-statement cache).
    async fn run_each(&self, statements: &[String]) -> Result<()> {
        for stmt in statements {
            sqlx::query(sqlx::AssertSqlSafe(stmt.clone()))
                .persistent(false)
                .execute(&self.any)
                .await
                .with_context(|| {
                    let head: String = stmt.chars().take(200).collect();
                    format!("failed: {head}")
                })?;
        }
        Ok(())
    }

    /// Creates a change table for `dt` (see [`change_table_ddl`]).
    pub async fn create_change_table(&self, dt: &DataType, table: &str) -> Result<()> {
        self.run_each(&change_table_ddl(self.backend, dt, table))
            .await
    }

    /// Appends rows to a change table, as a department's trigger or exchange job would.
    pub async fn insert_change_rows(&self, table: &str, rows: &[ChangeRow<'_>]) -> Result<()> {
        self.run_each(&insert_change_rows_sql(self.backend, table, rows))
            .await
    }

    /// Creates a subjects table holding `rows` (see [`subjects_table_sql`]).
    pub async fn create_subjects_table(&self, table: &str, rows: &[SubjectRow]) -> Result<()> {
        self.run_each(&subjects_table_sql(self.backend, table, rows))
            .await
    }

    /// Every row of a query with each column as text (integers printed): for tests that look
    /// at what qianzhi wrote back, as a DBA would with plain SQL.
    pub async fn text_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        use sqlx::Row;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&self.any)
            .await
            .with_context(|| format!("failed: {sql}"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<Option<String>, _>(i)
                            .ok()
                            .flatten()
                            .or_else(|| {
                                r.try_get::<Option<i64>, _>(i)
                                    .ok()
                                    .flatten()
                                    .map(|v| v.to_string())
                            })
                    })
                    .collect()
            })
            .collect())
    }

    /// MySQL's `EXPLAIN` of the page `read_changes` would run, one (`type`, `key`) per table
    /// of the plan; None on other backends (their plans are read differently).
    pub async fn explain_page(
        &self,
        spec: &super::source::SourceSpec<'_>,
        select: &[String],
        after: Option<&[crate::value::Value]>,
        limit: usize,
    ) -> Result<Option<Vec<(String, Option<String>)>>> {
        use sqlx::Row;
        let super::SourcePool::Mysql(pool) = &self.source else {
            return Ok(None);
        };
        let (sql, values) = self.page_query(spec, select, after, limit);
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")), values)
            .fetch_all(pool)
            .await
            .with_context(|| format!("EXPLAIN {sql}"))?;
        rows.iter()
            .map(|r| {
                let ty: Option<String> = r.try_get("type")?;
                let key: Option<String> = r.try_get("key")?;
                Ok((ty.unwrap_or_default(), key))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map(Some)
            .context("reading EXPLAIN")
    }

    /// The single integer a query answers (a COUNT, a sequence number).
    pub async fn scalar_i64(&self, sql: &str) -> Result<i64> {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.any)
            .await
            .with_context(|| format!("failed: {sql}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Catalog;
    use crate::schema::sample::sample_fields;

    const ALL: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::Mysql];

    #[test]
    fn change_table_types_follow_the_backend() {
        let cat = Catalog::load(None).unwrap();
        let dt = cat.data_type("gdzw", "accept").unwrap();
        for (backend, want) in [
            (
                Backend::Sqlite,
                [
                    r#""change_id" integer NOT NULL PRIMARY KEY AUTOINCREMENT"#,
                    r#""ApplyDate" datetime_text"#,
                    r#""cd_operation" char(1) NOT NULL"#,
                ],
            ),
            (
                Backend::Postgres,
                [
                    r#""change_id" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL PRIMARY KEY"#,
                    r#""applydate" timestamp without time zone"#,
                    r#""cd_operation" char(1) NOT NULL"#,
                ],
            ),
            (
                Backend::Mysql,
                [
                    "`change_id` bigint NOT NULL PRIMARY KEY AUTO_INCREMENT",
                    "`ApplyDate` datetime",
                    "`cd_operation` char(1) NOT NULL",
                ],
            ),
        ] {
            let ddl = change_table_ddl(backend, dt, "accept_changes");
            assert_eq!(ddl.len(), 2);
            for w in want {
                assert!(ddl[0].contains(w), "{backend:?}: {w} in {}", ddl[0]);
            }
            assert_eq!(
                ddl[0].contains("DEFAULT CHARSET=utf8mb4"),
                backend == Backend::Mysql,
                "{}",
                ddl[0]
            );
            assert!(ddl[1].contains("accept_changes_ct"), "{}", ddl[1]);
        }
    }

    /// A sample column for every field a department supplies, and nothing qianzhi fills in.
    #[test]
    fn change_table_has_a_column_per_sample_field() {
        let cat = Catalog::load(None).unwrap();
        let dt = cat.data_type("gdzw", "accept").unwrap();
        let ddl = &change_table_ddl(Backend::Sqlite, dt, "t")[0];
        for f in sample_columns(dt) {
            assert!(ddl.contains(&format!("\"{}\" ", f.code)), "{}", f.code);
        }
        for skipped in ["Cd_Batch", "RowGuid", "ProDataOrgCode"] {
            assert!(!ddl.contains(&format!("\"{skipped}\"")), "{skipped}");
        }
    }

    /// Quotes and backslashes arrive as written: MySQL reads a backslash in a literal as an
    /// escape, so its dialect doubles it; the others double only the quote.
    #[test]
    fn literals_are_escaped_per_dialect() {
        let fields = vec![("Remark".to_string(), Lit::Text(r"it's C:\new".into()))];
        let row = ChangeRow {
            id: 1,
            op: "I",
            cd_time: "2026-11-20 10:00:00",
            fields: &fields,
        };
        for (backend, want) in [
            (Backend::Sqlite, r"'it''s C:\new'"),
            (Backend::Postgres, r"E'it\'s C:\\new'"),
            (Backend::Mysql, r"'it\'s C:\\new'"),
        ] {
            let sql = insert_change_rows_sql(backend, "t", &[row]);
            assert!(sql[0].contains(want), "{backend:?}: {}", sql[0]);
        }
    }

    /// Rows with the same fields share a statement; a row with other fields starts a new one.
    #[test]
    fn inserts_group_rows_with_the_same_fields() {
        let cat = Catalog::load(None).unwrap();
        let p = cat.platform("gdzw").unwrap();
        let dt = &p.data_types["accept"];
        let samples: Vec<_> = (1..=1001).map(|i| sample_fields(p, dt, i)).collect();
        let short = vec![("Remark".to_string(), Lit::Null)];
        let mut rows: Vec<ChangeRow> = samples
            .iter()
            .enumerate()
            .map(|(i, f)| ChangeRow {
                id: i as i64 + 1,
                op: "I",
                cd_time: "2026-11-20 10:00:00",
                fields: f,
            })
            .collect();
        rows.insert(
            2,
            ChangeRow {
                id: 0,
                op: "D",
                cd_time: "2026-11-20 10:00:00",
                fields: &short,
            },
        );
        for backend in ALL {
            let sql = insert_change_rows_sql(backend, "t", &rows);
            // Ids 1 and 2, the short row, then 999 rows in chunks of at most 500.
            let inserts = |s: &String| s.matches("'2026-11-20 10:00:00', 'I')").count();
            assert_eq!(
                sql.iter().map(inserts).collect::<Vec<_>>(),
                vec![2, 0, 500, 499],
                "{backend:?}"
            );
            assert!(
                sql[1].contains("(0, NULL, '2026-11-20 10:00:00', 'D')"),
                "{}",
                sql[1]
            );
        }
    }

    #[test]
    fn database_name_is_replaced() {
        for (u, want) in [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/qianzhi_bench",
            ),
            (
                "mysql://root@127.0.0.1:3306/test?ssl-mode=disabled",
                "mysql://root@127.0.0.1:3306/qianzhi_bench?ssl-mode=disabled",
            ),
            ("postgres://h", "postgres://h/qianzhi_bench"),
        ] {
            assert_eq!(with_database(u, "qianzhi_bench"), want);
        }
    }

    #[test]
    fn scratch_database_names_are_plain() {
        for ok in ["qianzhi_bench", "qz_t_0a1b"] {
            assert!(database_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1db", "a;drop", "a-b", "a b", "\"x\""] {
            assert!(database_name(bad).is_err(), "{bad}");
        }
    }
}

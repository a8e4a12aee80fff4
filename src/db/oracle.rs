//! The SQL of DM (达梦) and Oracle, which sea-query has no builder for: a `QueryBuilder` that
//! renders its statements with `?` placeholders, `OFFSET n ROWS FETCH NEXT n ROWS ONLY`,
//! upper-case identifiers and Oracle's string literals; and the MERGE an upsert becomes.
//!
//! Identifiers: Oracle and DM fold an unquoted name to upper case, so the control tables created
//! by `sql/{dm,oracle}/` (unquoted, lower case in the file) are stored as `QZ_BATCH`. A simple
//! lower-case name (`qz_batch`, `cd_batch`) is written quoted in upper case (`"QZ_BATCH"`): the
//! same object as the unquoted name, and safe for reserved words. Any other name (mixed or
//! upper case, Chinese) is quoted as written, so it must be spelt as the dictionary stores it.

use sea_query::{
    BinOper, DynIden, Expr, OnConflict, Oper, PrecedenceDecider, Query, QueryBuilder, Quote,
    SelectStatement, SqlWriter, SqlWriterValues, SubQueryStatement, Value, Values,
    backend::{EscapeBuilder, OperLeftAssocDecider, QuotedBuilder, TableRefBuilder},
};
use std::fmt::Write;

/// The query builder of the `dm` and `oracle` dialects.
#[derive(Debug, Default, Clone, Copy)]
pub struct OracleQueryBuilder;

/// A name Oracle would fold: lower-case ASCII letters, digits and `_`, starting with a letter.
fn folds(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// An identifier as the Oracle builder writes it (see the module comment).
pub fn quote_ident(name: &str) -> String {
    if folds(name) {
        format!("\"{}\"", name.to_ascii_uppercase())
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

impl QuotedBuilder for OracleQueryBuilder {
    fn quote(&self) -> Quote {
        Quote::new(b'"')
    }

    fn prepare_iden(&self, iden: &DynIden, sql: &mut impl SqlWriter) {
        sql.write_str(&quote_ident(&iden.inner())).unwrap();
    }
}

impl EscapeBuilder for OracleQueryBuilder {
    fn needs_escape(&self, s: &str) -> bool {
        s.contains('\'')
    }

    /// Oracle has no backslash escapes: a quote is doubled, everything else is itself.
    fn write_escaped(&self, buffer: &mut impl Write, string: &str) {
        for c in string.chars() {
            if c == '\'' {
                buffer.write_char('\'').unwrap();
            }
            buffer.write_char(c).unwrap();
        }
    }
}

impl TableRefBuilder for OracleQueryBuilder {}

/// sea-query's precedence table is private to it: this is the same table (ANSI precedence,
/// which Oracle and DM share), so the SQL reads like the other builders'.
impl PrecedenceDecider for OracleQueryBuilder {
    fn inner_expr_well_known_greater_precedence(&self, inner: &Expr, outer: &Oper) -> bool {
        use BinOper as B;
        let logical = matches!(
            outer,
            Oper::UnOper(sea_query::UnOper::Not) | Oper::BinOper(B::And | B::Or)
        );
        let predicate = |o: &Oper| {
            matches!(
                o,
                Oper::BinOper(
                    B::Equal
                        | B::NotEqual
                        | B::SmallerThan
                        | B::GreaterThan
                        | B::SmallerThanOrEqual
                        | B::GreaterThanOrEqual
                        | B::Between
                        | B::NotBetween
                        | B::In
                        | B::NotIn
                        | B::Like
                        | B::NotLike
                )
            )
        };
        match inner {
            Expr::Column(_)
            | Expr::Tuple(_)
            | Expr::Constant(_)
            | Expr::FunctionCall(_)
            | Expr::Value(_)
            | Expr::Keyword(_)
            | Expr::Case(_)
            | Expr::SubQuery(_, _)
            | Expr::TypeName(_) => true,
            Expr::Binary(_, op, _) => match op {
                B::Mul | B::Div | B::Mod | B::Add | B::Sub => predicate(outer) || logical,
                B::Is | B::IsNot => logical,
                op => predicate(&Oper::BinOper(*op)) && logical,
            },
            _ => false,
        }
    }
}

impl OperLeftAssocDecider for OracleQueryBuilder {
    fn well_known_left_associative(&self, op: &BinOper) -> bool {
        matches!(op, BinOper::And | BinOper::Or | BinOper::Add | BinOper::Mul)
    }
}

impl QueryBuilder for OracleQueryBuilder {
    fn prepare_query_statement(&self, query: &SubQueryStatement, sql: &mut impl SqlWriter) {
        match query {
            SubQueryStatement::SelectStatement(s) => self.prepare_select_statement(s, sql),
            SubQueryStatement::InsertStatement(s) => self.prepare_insert_statement(s, sql),
            SubQueryStatement::UpdateStatement(s) => self.prepare_update_statement(s, sql),
            SubQueryStatement::DeleteStatement(s) => self.prepare_delete_statement(s, sql),
            SubQueryStatement::WithStatement(s) => self.prepare_with_query(s, sql),
        }
    }

    fn prepare_select_into(&self, _: &sea_query::SelectInto, _: &mut impl SqlWriter) {}

    fn prepare_explain_statement(
        &self,
        explain: &sea_query::ExplainStatement,
        sql: &mut impl SqlWriter,
    ) {
        // Oracle's EXPLAIN PLAN FOR; qianzhi never explains, this only keeps the trait whole.
        sql.write_str("EXPLAIN PLAN FOR").unwrap();
        let _ = explain;
    }

    fn prepare_value(&self, value: Value, sql: &mut impl SqlWriter) {
        sql.push_param(value, self as _);
    }

    /// `OFFSET ? ROWS FETCH NEXT ? ROWS ONLY` (Oracle 12c and later, DM 7 and later), both
    /// bound as the other builders bind LIMIT and OFFSET.
    fn prepare_select_limit_offset(&self, select: &SelectStatement, sql: &mut impl SqlWriter) {
        let (limit, offset) = limit_offset(select);
        if let Some(o) = offset {
            sql.write_str(" OFFSET ").unwrap();
            self.prepare_value(o, sql);
            sql.write_str(" ROWS").unwrap();
        }
        if let Some(l) = limit {
            sql.write_str(" FETCH NEXT ").unwrap();
            self.prepare_value(l, sql);
            sql.write_str(" ROWS ONLY").unwrap();
        }
    }

    fn write_string_quoted(&self, string: &str, buffer: &mut impl Write) {
        buffer.write_char('\'').unwrap();
        self.write_escaped(buffer, string);
        buffer.write_char('\'').unwrap();
    }

    fn write_bytes(&self, bytes: &[u8], buffer: &mut impl Write) {
        buffer.write_str("HEXTORAW('").unwrap();
        for b in bytes {
            write!(buffer, "{b:02X}").unwrap();
        }
        buffer.write_str("')").unwrap();
    }

    fn if_null_function(&self) -> &str {
        "NVL"
    }

    fn char_length_function(&self) -> &str {
        "LENGTH"
    }

    fn random_function(&self) -> &str {
        "DBMS_RANDOM.VALUE"
    }

    /// Oracle has no boolean column type before 23ai: true and false are 1 and 0.
    fn prepare_constant_true(&self, sql: &mut impl SqlWriter) {
        sql.write_str("1").unwrap();
    }

    fn prepare_constant_false(&self, sql: &mut impl SqlWriter) {
        sql.write_str("0").unwrap();
    }
}

/// The LIMIT and OFFSET of a select. sea-query keeps them private; its generic writer of
/// `LIMIT ? OFFSET ?` (the MySQL builder uses it unchanged) hands them over in that order.
fn limit_offset(select: &SelectStatement) -> (Option<Value>, Option<Value>) {
    let mut w = SqlWriterValues::new("?", false);
    sea_query::MysqlQueryBuilder.prepare_select_limit_offset(select, &mut w);
    let (text, values) = w.into_parts();
    let mut values = values.0.into_iter();
    let limit = if text.contains("LIMIT") {
        values.next()
    } else {
        None
    };
    let offset = if text.contains("OFFSET") {
        values.next()
    } else {
        None
    };
    (limit, offset)
}

/// An insert that, when a row with the same key exists, updates it (or leaves it): the one
/// shape in which every control-table upsert is written. Rendered as `INSERT ... ON CONFLICT`
/// / `ON DUPLICATE KEY UPDATE` by sea-query, and as `MERGE` for DM and Oracle.
#[derive(Debug, Clone)]
pub struct Upsert {
    pub table: &'static str,
    pub columns: Vec<&'static str>,
    pub values: Vec<Expr>,
    pub keys: Vec<&'static str>,
    /// What an existing row's columns become; empty: the existing row is left as it is.
    pub update: Vec<(&'static str, Set)>,
}

/// The new value of a column of an existing row.
#[derive(Debug, Clone)]
pub enum Set {
    /// The value the insert would have written.
    Inserted,
    /// An expression over the existing row (`seq + 1`) or a constant.
    To(Expr),
}

impl Upsert {
    /// The sea-query insert of the PostgreSQL, MySQL and SQLite builders.
    pub fn insert(&self) -> sea_query::InsertStatement {
        let mut on = OnConflict::columns(self.keys.iter().copied());
        if self.update.is_empty() {
            on.do_nothing_on(self.keys.iter().copied());
        }
        for (col, set) in &self.update {
            match set {
                Set::Inserted => {
                    on.update_column(*col);
                }
                Set::To(e) => {
                    on.value(*col, e.clone());
                }
            }
        }
        Query::insert()
            .into_table(self.table)
            .columns(self.columns.iter().copied())
            .values_panic(self.values.iter().cloned())
            .on_conflict(on)
            .to_owned()
    }

    /// `MERGE INTO t USING (SELECT ? AS a, ... FROM DUAL) s ON (t.k = s.k) WHEN MATCHED THEN
    /// UPDATE SET ... WHEN NOT MATCHED THEN INSERT (...) VALUES (s.a, ...)`, with its values
    /// in placeholder order. Merge is one statement, so it is as atomic as the others' upserts.
    pub fn merge(&self) -> (String, Values) {
        let b = OracleQueryBuilder;
        let t = quote_ident(self.table);
        let mut using = Query::select();
        for (c, v) in self.columns.iter().zip(&self.values) {
            using.expr_as(v.clone(), *c);
        }
        using.from("dual");
        let (using_sql, mut values) = using.build(b);
        let on = self
            .keys
            .iter()
            .map(|k| format!("{t}.{q} = s.{q}", q = quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let mut sql = format!("MERGE INTO {t} USING ({using_sql}) s ON ({on})");
        if !self.update.is_empty() {
            let mut update = Query::update();
            update.table(self.table);
            for (col, set) in &self.update {
                let e = match set {
                    Set::Inserted => Expr::cust(format!("s.{}", quote_ident(col))),
                    Set::To(e) => e.clone(),
                };
                update.value(*col, e);
            }
            let (update_sql, update_values) = update.build(b);
            let set = update_sql
                .split_once(" SET ")
                .map(|(_, s)| s)
                .unwrap_or_default();
            // The SET list's own names are unqualified; Oracle takes them as the target's.
            write!(sql, " WHEN MATCHED THEN UPDATE SET {set}").unwrap();
            values.0.extend(update_values.0);
        }
        let cols = self
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>();
        let from_s = cols.iter().map(|c| format!("s.{c}")).collect::<Vec<_>>();
        write!(
            sql,
            " WHEN NOT MATCHED THEN INSERT ({}) VALUES ({})",
            cols.join(", "),
            from_s.join(", ")
        )
        .unwrap();
        (sql, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_query::{ExprTrait, LockType, Order};

    #[test]
    fn identifiers_fold_like_oracle() {
        for (name, want) in [
            ("qz_batch", "\"QZ_BATCH\""),
            ("level", "\"LEVEL\""),
            ("cd_batch2", "\"CD_BATCH2\""),
            ("XM", "\"XM\""),
            ("MixedCase", "\"MixedCase\""),
            ("姓名", "\"姓名\""),
            ("a\"b", "\"a\"\"b\""),
            ("_x", "\"_x\""),
        ] {
            assert_eq!(quote_ident(name), want, "{name}");
        }
    }

    #[test]
    fn golden_statements() {
        let b = OracleQueryBuilder;
        let page = Query::select()
            .columns(["id", "xm"])
            .from("dept_changes")
            .and_where(Expr::col("id").gt(41))
            .order_by("id", Order::Asc)
            .limit(500)
            .to_owned();
        let lock = Query::select()
            .column("holder")
            .from("qz_lease")
            .and_where(Expr::col("job").eq("j1"))
            .lock(LockType::Update)
            .to_owned();
        let paged = Query::select()
            .column("id")
            .from("qz_error")
            .order_by("id", Order::Desc)
            .limit(10)
            .offset(20)
            .to_owned();
        let update = Query::update()
            .table("qz_cursor")
            .value("last_seq", Expr::col("last_seq").add(1))
            .value("status", crate::db::lit("pending"))
            .and_where(Expr::col("job").eq("j1"))
            .to_owned();
        let insert = Query::insert()
            .into_table("qz_error")
            .columns(["job", "message"])
            .values_panic([Expr::val("j1"), Expr::val("it's")])
            .to_owned();
        let delete = Query::delete()
            .from_table("qz_outbox")
            .and_where(Expr::col("batch_id").eq(7))
            .to_owned();
        let quoted = Query::select()
            .expr(Expr::val("x"))
            .from("t")
            .and_where(Expr::col("c").eq(crate::db::lit("o'k")))
            .to_owned();
        for (got, want, n) in [
            (
                page.build(b),
                "SELECT \"ID\", \"XM\" FROM \"DEPT_CHANGES\" WHERE \"ID\" > ? ORDER BY \"ID\" ASC \
                 FETCH NEXT ? ROWS ONLY",
                2,
            ),
            (
                lock.build(b),
                "SELECT \"HOLDER\" FROM \"QZ_LEASE\" WHERE \"JOB\" = ? FOR UPDATE",
                1,
            ),
            (
                paged.build(b),
                "SELECT \"ID\" FROM \"QZ_ERROR\" ORDER BY \"ID\" DESC OFFSET ? ROWS \
                 FETCH NEXT ? ROWS ONLY",
                2,
            ),
            (
                update.build(b),
                "UPDATE \"QZ_CURSOR\" SET \"LAST_SEQ\" = \"LAST_SEQ\" + ?, \"STATUS\" = 'pending' \
                 WHERE \"JOB\" = ?",
                2,
            ),
            (
                insert.build(b),
                "INSERT INTO \"QZ_ERROR\" (\"JOB\", \"MESSAGE\") VALUES (?, ?)",
                2,
            ),
            (
                delete.build(b),
                "DELETE FROM \"QZ_OUTBOX\" WHERE \"BATCH_ID\" = ?",
                1,
            ),
            (
                quoted.build(b),
                "SELECT ? FROM \"T\" WHERE \"C\" = 'o''k'",
                1,
            ),
        ] {
            assert_eq!(got.0, want);
            assert_eq!(got.1.0.len(), n, "{want}");
        }
    }

    #[test]
    fn upsert_renders_as_merge_and_as_on_conflict() {
        let u = Upsert {
            table: "qz_cursor",
            columns: vec!["job", "last_seq", "status"],
            values: vec![Expr::val("j1"), Expr::val(0), Expr::val("ok")],
            keys: vec!["job"],
            update: vec![
                ("last_seq", Set::To(Expr::col("last_seq").add(1))),
                ("status", Set::Inserted),
            ],
        };
        let (sql, values) = u.merge();
        assert_eq!(
            sql,
            "MERGE INTO \"QZ_CURSOR\" USING (SELECT ? AS \"JOB\", ? AS \"LAST_SEQ\", ? AS \"STATUS\" FROM \"DUAL\") s \
             ON (\"QZ_CURSOR\".\"JOB\" = s.\"JOB\") WHEN MATCHED THEN UPDATE SET \
             \"LAST_SEQ\" = \"LAST_SEQ\" + ?, \"STATUS\" = s.\"STATUS\" \
             WHEN NOT MATCHED THEN INSERT (\"JOB\", \"LAST_SEQ\", \"STATUS\") \
             VALUES (s.\"JOB\", s.\"LAST_SEQ\", s.\"STATUS\")"
        );
        assert_eq!(
            values.0,
            vec![
                Value::from("j1"),
                Value::from(0i32),
                Value::from("ok"),
                Value::from(1i32)
            ]
        );
        let nothing = Upsert {
            update: vec![],
            ..u.clone()
        };
        let (sql, _) = nothing.merge();
        assert!(!sql.contains("WHEN MATCHED"), "{sql}");
        let (pg, _) = nothing.insert().build(sea_query::PostgresQueryBuilder);
        assert_eq!(
            pg,
            "INSERT INTO \"qz_cursor\" (\"job\", \"last_seq\", \"status\") VALUES ($1, $2, $3) \
             ON CONFLICT (\"job\") DO NOTHING"
        );
        let (my, _) = u.insert().build(sea_query::MysqlQueryBuilder);
        assert_eq!(
            my,
            "INSERT INTO `qz_cursor` (`job`, `last_seq`, `status`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE \
             `last_seq` = `last_seq` + ?, `status` = VALUES(`status`)"
        );
    }
}

//! Source rows through psqlODBC as one text value each: `SELECT ROW(a, b, ...)::text`, split
//! and typed here. psqlODBC converts every value it hands over on its own (a character-set
//! lookup by name, a line-feed scan, a copy and a free; `sscanf` for a timestamp): about
//! 1,200 instructions a value, 3,600 for a timestamp, most of the cost of a page read through
//! it. A row packed by the server crosses that path once. Only pages whose columns all have
//! a type whose text PostgreSQL and psqlODBC write alike are packed ([`Packing::of`]); a value
//! packed text cannot give exactly as psqlODBC would (a year past 9999, BC, infinity) sends
//! its page back to the per-column read ([`read`] answers None).

use super::{Driver, Pool, SourceKind, params, statement_context};
use crate::db::odbc_any::{TextCoding, column_type};
use crate::db::source::RowTexts;
use crate::value::{SourceRow, Value as SourceValue};
use anyhow::{Context, Result, bail};
use odbc_api::handles::AsStatementRef;
use odbc_api::{Connection, Cursor, ResultSetMetadata};
use sea_query::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A pool's packing state: `database.odbc_packed_rows`, what was found for each query shape,
/// and how many pages were read packed.
pub(super) struct Packings {
    on: AtomicBool,
    /// By [`packing_key`]: the packing, or None for column by column.
    found: Mutex<HashMap<String, Option<Arc<Packing>>>>,
    pages: AtomicU64,
}

impl Default for Packings {
    fn default() -> Packings {
        Packings {
            on: AtomicBool::new(true),
            found: Mutex::default(),
            pages: AtomicU64::new(0),
        }
    }
}

/// The key of the packing of a page of `table` selecting `select`; the key of the table alone
/// begins every key of its pages.
pub(crate) fn packing_key(table: &str, select: &[String]) -> String {
    let mut key = format!("{table}\u{1f}");
    for c in select {
        key.push_str(c);
        key.push('\u{1f}');
    }
    key
}

impl Pool {
    /// `database.odbc_packed_rows`: whether PostgreSQL pages may be read packed at all.
    pub fn set_packed_rows(&self, on: bool) {
        self.inner.packings.on.store(on, Ordering::Relaxed);
    }

    pub fn packs_rows(&self) -> bool {
        self.inner.packings.on.load(Ordering::Relaxed)
    }

    /// How many pages were read packed so far (their rows given by `packed_page`).
    pub fn packed_pages(&self) -> u64 {
        self.inner.packings.pages.load(Ordering::Relaxed)
    }

    fn found(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Arc<Packing>>>> {
        self.inner.packings.found.lock().expect("odbc pool lock")
    }

    /// Forgets how the pages of `table` are read, so that the next page finds it again from
    /// the columns as they are now (a view may have been changed since).
    pub fn forget_packings(&self, table: &str) {
        let prefix = packing_key(table, &[]);
        self.found().retain(|k, _| !k.starts_with(&prefix));
    }

    /// Whether the pages of `sql` would be read packed, or why not (`check`); not kept.
    pub(crate) async fn explain_packing(&self, sql: String) -> Result<Result<(), String>> {
        let mut conn = self.acquire().await?;
        conn.run(move |c, driver| Ok(decide(c, driver, &sql)?.map(|_| ())))
            .await
    }

    /// How the pages of a source query `key` (see [`packing_key`]) are read packed, or None
    /// when they are not: found once from the columns `sql()` would give (their PostgreSQL
    /// type names and kinds) and kept.
    pub(crate) async fn packing(
        &self,
        key: &str,
        sql: impl FnOnce() -> String,
    ) -> Result<Option<Arc<Packing>>> {
        if let Some(p) = self.found().get(key) {
            return Ok(p.clone());
        }
        let sql = sql();
        let mut conn = self.acquire().await?;
        let packing = conn
            .run(move |c, driver| Ok(decide(c, driver, &sql)?.ok().map(Arc::new)))
            .await?;
        self.found().insert(key.to_string(), packing.clone());
        Ok(packing)
    }

    /// The rows of a packed page (`SELECT ROW(...)::text`), or None when one of its values
    /// must be read column by column instead.
    pub(crate) async fn packed_page(
        &self,
        sql: String,
        values: Vec<Value>,
        packing: Arc<Packing>,
    ) -> Result<Option<Vec<SourceRow>>> {
        let mut conn = self.acquire().await?;
        let rows = conn
            .run(move |c, driver| {
                let params = params(values, driver.coding)?;
                let Some(cursor) = c
                    .execute(&sql, &params[..], None)
                    .with_context(|| statement_context(&sql))?
                else {
                    return Ok(Some(Vec::new()));
                };
                read(cursor, &packing)
            })
            .await?;
        if rows.is_some() {
            self.inner.packings.pages.fetch_add(1, Ordering::Relaxed);
        }
        Ok(rows)
    }
}

/// The packing of the columns `sql` gives on this connection, or why they are read column by
/// column. Packed text must cross as UTF-8, so a connection that reads text as UTF-16 (a
/// locale other than UTF-8) never packs.
fn decide(c: &Connection<'_>, driver: Driver, sql: &str) -> Result<Result<Packing, String>> {
    if driver.coding != TextCoding::Utf8 {
        return Ok(Err(
            "text crosses the driver as UTF-16 (not a UTF-8 locale)".into(),
        ));
    }
    packing_of(c, sql)
}

/// How the columns of a packed page are typed again.
#[derive(Debug)]
pub(crate) struct Packing {
    pub(crate) names: Arc<[String]>,
    pub(crate) kinds: Vec<SourceKind>,
}

impl Packing {
    /// A packing for columns of these PostgreSQL type names (SQL_DESC_TYPE_NAME as psqlODBC
    /// gives it) read as these kinds; or why not: the first column whose type is not written
    /// alike (`bool` comes through psqlODBC as `1`/`0`, `bytea` as bytes, `time` reformatted,
    /// ...), as `column ok is bool`.
    pub(crate) fn of(
        names: Vec<String>,
        columns: &[(String, SourceKind)],
    ) -> Result<Packing, String> {
        let alike = |name: &str, kind: SourceKind| match kind {
            // psqlODBC names an identity or serial column by its serial type.
            SourceKind::Int => matches!(
                name,
                "int2" | "int4" | "int8" | "numeric" | "smallserial" | "serial" | "bigserial"
            ),
            SourceKind::Float => matches!(name, "float4" | "float8"),
            SourceKind::Decimal => name == "numeric",
            SourceKind::Date => name == "date",
            SourceKind::Timestamp => matches!(
                name,
                "timestamp"
                    | "timestamp without time zone"
                    | "timestamptz"
                    | "timestamp with time zone"
            ),
            SourceKind::Text => matches!(name, "varchar" | "text" | "char" | "bpchar" | "name"),
            SourceKind::Bool | SourceKind::Bytes => false,
        };
        if columns.is_empty() {
            return Err("no columns".into());
        }
        if let Some(((type_name, _), name)) =
            columns.iter().zip(&names).find(|((t, k), _)| !alike(t, *k))
        {
            return Err(format!("column {name} is {type_name}"));
        }
        Ok(Packing {
            names: names.into(),
            kinds: columns.iter().map(|(_, k)| *k).collect(),
        })
    }
}

/// The packing of the columns `sql` gives (see `Pool::packing`), or why they are read column
/// by column.
pub(super) fn packing_of(c: &Connection<'_>, sql: &str) -> Result<Result<Packing, String>> {
    let mut p = c.prepare(sql).with_context(|| statement_context(sql))?;
    let n = u16::try_from(p.num_result_cols()?).unwrap_or(0);
    let mut names = Vec::with_capacity(usize::from(n));
    let mut columns = Vec::with_capacity(usize::from(n));
    for i in 1..=n {
        let name = p.col_name(i)?;
        let kind = SourceKind::of(column_type(&mut p, i)?);
        let Some(type_name) = pg_type_name(&mut p, i) else {
            return Ok(Err(format!("the driver names no type for column {name}")));
        };
        names.push(name);
        columns.push((type_name, kind));
    }
    Ok(Packing::of(names, &columns))
}

/// A column's type name as the driver gives it (SQL_DESC_TYPE_NAME; psqlODBC: `int8`,
/// `varchar`, `timestamp`, ...), None when it gives none.
fn pg_type_name(p: &mut impl AsStatementRef, col: u16) -> Option<String> {
    use odbc_api::handles::Statement;
    use odbc_api::sys::{Desc, SQLColAttributeW, SqlReturn};
    let stmt = p.as_stmt_ref();
    let mut buf = [0u16; 64];
    let mut len: i16 = 0;
    // SAFETY: the buffer and its length in bytes are this function's own; the driver writes
    // at most that many bytes and the length of the whole name into `len`.
    let r = unsafe {
        SQLColAttributeW(
            stmt.as_sys(),
            col,
            Desc::TypeName,
            buf.as_mut_ptr().cast(),
            i16::try_from(std::mem::size_of_val(&buf)).ok()?,
            &mut len,
            std::ptr::null_mut(),
        )
    };
    if r != SqlReturn::SUCCESS {
        return None;
    }
    let units = usize::try_from(len).ok()? / 2;
    String::from_utf16(buf.get(..units)?).ok()
}

/// The rows of a packed page, or None when a value cannot be typed here as psqlODBC would
/// type it (the page is then read again column by column).
pub(super) fn read(mut cursor: impl Cursor, packing: &Packing) -> Result<Option<Vec<SourceRow>>> {
    let mut rows = Vec::new();
    let mut text = Vec::new();
    let mut fields = Fields::default();
    let mut texts = RowTexts::default();
    while let Some(mut row) = cursor.next_row()? {
        if !row.get_text(1, &mut text)? {
            bail!("a packed row came back NULL");
        }
        if split(&text, &mut fields).is_err() || fields.len() != packing.kinds.len() {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(fields.len());
        for (i, kind) in packing.kinds.iter().enumerate() {
            let Some(bytes) = fields.get(&text, i) else {
                values.push(SourceValue::Null);
                continue;
            };
            let Some(v) = typed(*kind, bytes) else {
                return Ok(None);
            };
            if matches!(v, SourceValue::Null) {
                texts.push(i, bytes);
            }
            values.push(v);
        }
        texts.fill(&mut values, &packing.names)?;
        rows.push(SourceRow {
            names: packing.names.clone(),
            values,
        });
    }
    Ok(Some(rows))
}

/// A value of a packed row as the per-column read would give it; a text value is NULL until
/// `RowTexts` fills it in; None when psqlODBC would read it otherwise.
fn typed(kind: SourceKind, bytes: &[u8]) -> Option<SourceValue> {
    let text = || std::str::from_utf8(bytes).ok();
    Some(match kind {
        SourceKind::Int => SourceValue::Int(text()?.trim().parse().ok()?),
        SourceKind::Float => SourceValue::Float(text()?.trim().parse().ok()?),
        SourceKind::Decimal => SourceValue::Decimal(text()?.trim().to_string()),
        SourceKind::Date => SourceValue::Date(date(bytes)?),
        SourceKind::Timestamp => SourceValue::DateTime(timestamp(bytes)?),
        SourceKind::Text => SourceValue::Null,
        SourceKind::Bool | SourceKind::Bytes => return None,
    })
}

/// `n` ASCII digits as a number.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// `YYYY-MM-DD`, PostgreSQL's ISO date (psqlODBC sets DateStyle ISO on every connection).
fn date(b: &[u8]) -> Option<chrono::NaiveDate> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = i32::try_from(digits(&b[..4])?).ok()?;
    chrono::NaiveDate::from_ymd_opt(y, digits(&b[5..7])?, digits(&b[8..10])?)
}

/// `YYYY-MM-DD HH:MM:SS[.fraction][zone]`; the zone is dropped, as psqlODBC drops it (the
/// time as the session's time zone writes it).
fn timestamp(b: &[u8]) -> Option<chrono::NaiveDateTime> {
    if b.len() < 19 || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let day = date(&b[..10])?;
    let (h, m, s) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let mut rest = &b[19..];
    let mut nanos = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(&frac[..n])? * 10u32.pow(9 - n as u32);
        rest = &frac[n..];
    }
    // A zone: +08, -03:30, +05:45:10.
    if let Some((sign, zone)) = rest.split_first()
        && (!matches!(sign, b'+' | b'-') || !zone.iter().all(|c| c.is_ascii_digit() || *c == b':'))
    {
        return None;
    }
    day.and_hms_nano_opt(h, m, s, nanos)
}

/// The fields of a record as PostgreSQL's `record_out` writes it: `(a,"b c",,"")`. A field
/// is quoted when empty or holding `"`, `\`, `(`, `)`, `,` or white space, and inside quotes
/// `"` and `\` are doubled; an empty unquoted field is NULL. Each field is a range of `text`
/// itself, or of `unquoted` where quotes had to be undone.
pub(super) fn split(text: &[u8], fields: &mut Fields) -> Result<(), ()> {
    fields.ranges.clear();
    fields.unquoted.clear();
    let inner = text
        .strip_prefix(b"(")
        .and_then(|t| t.strip_suffix(b")"))
        .ok_or(())?;
    let mut i = 0;
    loop {
        if inner.get(i) == Some(&b'"') {
            i += 1;
            let from = fields.unquoted.len();
            loop {
                // Runs between the characters quoting doubles are copied whole.
                let rest = &inner[i..];
                let n = memchr::memchr2(b'"', b'\\', rest).ok_or(())?;
                fields.unquoted.extend_from_slice(&rest[..n]);
                i += n;
                let next = inner.get(i + 1).copied();
                if inner[i] == b'"' && next != Some(b'"') {
                    i += 1;
                    break;
                }
                fields.unquoted.push(next.ok_or(())?);
                i += 2;
            }
            fields
                .ranges
                .push(Some(Field::Unquoted(from..fields.unquoted.len())));
        } else {
            let rest = &inner[i..];
            let n = memchr::memchr(b',', rest).unwrap_or(rest.len());
            let v = &rest[..n];
            // An unquoted field holds none of the characters that would have quoted it.
            if memchr::memchr3(b'"', b'\\', b'(', v).is_some() || memchr::memchr(b')', v).is_some()
            {
                return Err(());
            }
            // +1: ranges of `text`, past its opening parenthesis.
            fields
                .ranges
                .push((!v.is_empty()).then(|| Field::Plain(i + 1..i + n + 1)));
            i += n;
        }
        match inner.get(i) {
            None => return Ok(()),
            Some(b',') => i += 1,
            Some(_) => return Err(()),
        }
    }
}

/// Where each field of a record is: None for NULL.
#[derive(Default)]
pub(super) struct Fields {
    ranges: Vec<Option<Field>>,
    unquoted: Vec<u8>,
}

enum Field {
    Plain(std::ops::Range<usize>),
    Unquoted(std::ops::Range<usize>),
}

impl Fields {
    fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The bytes of field `i` of `text` (the record last split), None for NULL.
    fn get<'a>(&'a self, text: &'a [u8], i: usize) -> Option<&'a [u8]> {
        match self.ranges[i].as_ref()? {
            Field::Plain(r) => Some(&text[r.clone()]),
            Field::Unquoted(r) => Some(&self.unquoted[r.clone()]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Split = Result<Vec<Option<String>>, ()>;

    fn fields(text: &str) -> Split {
        let mut out = Fields::default();
        split(text.as_bytes(), &mut out)?;
        Ok((0..out.len())
            .map(|i| {
                out.get(text.as_bytes(), i)
                    .map(|b| String::from_utf8(b.to_vec()).unwrap())
            })
            .collect())
    }

    #[test]
    fn records_split_as_record_out_writes_them() {
        let s = |v: &str| Some(v.to_string());
        let cases: &[(&str, Split)] = &[
            ("(1,abc)", Ok(vec![s("1"), s("abc")])),
            ("(,)", Ok(vec![None, None])),
            ("()", Ok(vec![None])),
            (r#"("",x)"#, Ok(vec![s(""), s("x")])),
            (r#"("a ""b"" \\c",)"#, Ok(vec![s(r#"a "b" \c"#), None])),
            (
                r#"("(1,2)",事项名称1)"#,
                Ok(vec![s("(1,2)"), s("事项名称1")]),
            ),
            (
                r#"(1,"2026-11-20 10:00:00",I)"#,
                Ok(vec![s("1"), s("2026-11-20 10:00:00"), s("I")]),
            ),
            (r#"("{""id"":1}")"#, Ok(vec![s(r#"{"id":1}"#)])),
            ("1,2", Err(())),
            (r#"("open)"#, Err(())),
            (r#"("a"b)"#, Err(())),
            ("(a\"b)", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(&fields(text), want, "{text}");
        }
    }

    #[test]
    fn values_are_typed_as_psqlodbc_types_them() {
        use chrono::NaiveDate;
        let ts = |s: &str| typed(SourceKind::Timestamp, s.as_bytes());
        let at = |h, m, s, n| {
            SourceValue::DateTime(
                NaiveDate::from_ymd_opt(2026, 11, 20)
                    .unwrap()
                    .and_hms_nano_opt(h, m, s, n)
                    .unwrap(),
            )
        };
        assert_eq!(ts("2026-11-20 10:00:00"), Some(at(10, 0, 0, 0)));
        assert_eq!(ts("2026-11-20 10:00:00.5"), Some(at(10, 0, 0, 500_000_000)));
        assert_eq!(
            ts("2026-11-20 10:00:00.123456+08"),
            Some(at(10, 0, 0, 123_456_000))
        );
        assert_eq!(ts("2026-11-20 23:59:59-03:30"), Some(at(23, 59, 59, 0)));
        for odd in [
            "infinity",
            "-infinity",
            "2026-11-20 10:00:00 BC",
            "12026-11-20 10:00:00",
            "2026-02-30 10:00:00",
            "2026-11-20 10:00:00.",
        ] {
            assert_eq!(ts(odd), None, "{odd}");
        }
        let day = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        assert_eq!(
            typed(SourceKind::Date, b"2026-01-02"),
            Some(SourceValue::Date(day))
        );
        assert_eq!(typed(SourceKind::Date, b"infinity"), None);
        assert_eq!(typed(SourceKind::Int, b"-42"), Some(SourceValue::Int(-42)));
        assert_eq!(typed(SourceKind::Int, b"4.5"), None);
        assert_eq!(
            typed(SourceKind::Float, b"-Infinity"),
            Some(SourceValue::Float(f64::NEG_INFINITY))
        );
        assert_eq!(
            typed(SourceKind::Float, b"1.5"),
            Some(SourceValue::Float(1.5))
        );
        assert_eq!(
            typed(SourceKind::Decimal, b"12.50"),
            Some(SourceValue::Decimal("12.50".into()))
        );
        assert_eq!(typed(SourceKind::Text, b"x"), Some(SourceValue::Null));
    }

    #[test]
    fn only_types_written_alike_are_packed() {
        let cols = |c: &[(&str, SourceKind)]| {
            c.iter()
                .map(|(n, k)| (n.to_string(), *k))
                .collect::<Vec<_>>()
        };
        let names = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
        let ok = cols(&[
            ("int8", SourceKind::Int),
            ("bigserial", SourceKind::Int),
            ("varchar", SourceKind::Text),
            ("timestamp", SourceKind::Timestamp),
            ("numeric", SourceKind::Decimal),
        ]);
        assert!(Packing::of(names(5), &ok).is_ok());
        for odd in [
            ("bool", SourceKind::Text),
            ("bytea", SourceKind::Bytes),
            ("time", SourceKind::Text),
            ("uuid", SourceKind::Text),
            ("varchar", SourceKind::Bool),
        ] {
            let mut c = ok.clone();
            c.push((odd.0.to_string(), odd.1));
            let why = Packing::of(names(6), &c).err();
            assert_eq!(why, Some(format!("column c5 is {}", odd.0)), "{odd:?}");
        }
        assert!(Packing::of(Vec::new(), &[]).is_err());
    }

    /// Through the local PostgreSQL's psqlODBC (QIANZHI_TEST_ODBC_PG), as the other server
    /// tests of the pool.
    mod server {
        use super::super::super::tests::server_tests::{connect, same};
        use super::super::super::{TextCoding, read_source};
        use super::super::*;
        use crate::value::Value as V;

        /// A page of PostgreSQL read packed (`ROW(...)::text`, split here) gives the values
        /// the column-by-column read gives, for text that must be quoted in a record; a
        /// column of a type not written alike, or a value psqlODBC reads otherwise, leaves
        /// the page to the column read.
        #[test]
        fn packed_and_column_rows_agree_on_psqlodbc() {
            let Some((conn, driver)) = connect("QIANZHI_TEST_ODBC_PG") else {
                return;
            };
            if driver.coding != TextCoding::Utf8 {
                eprintln!("packed rows need a UTF-8 locale: skipped");
                return;
            }
            let table = format!("qz_packed_{}", uuid::Uuid::new_v4().simple());
            let ddl = format!(
                "CREATE TABLE {table} (id BIGINT, i INTEGER, s SMALLINT, f DOUBLE PRECISION, \
                 r REAL, d DATE, ts TIMESTAMP(6), tz TIMESTAMPTZ, m NUMERIC(12,2), \
                 n NUMERIC(10,0), v VARCHAR(40), c CHAR(3), t TEXT, ok BOOLEAN)"
            );
            conn.execute(&ddl, (), None).unwrap();
            let insert = format!(
                "INSERT INTO {table} VALUES \
                 (1, 7, -3, 2.5, 0.1, '2026-11-20', '2026-11-20 10:05:07.00025', \
                  '2026-11-20 10:05:07+08', 1234.50, 42, '前置机𠀀', 'ab', \
                  'a \"q\" b, (c) \\ d' || chr(10) || 'e', true), \
                 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
                 (3, -1, 0, -1e300, 1.5e-7, '0001-01-01', '2026-01-01 00:00:00', \
                  '2026-01-01 00:00:00.5-03:30', -0.01, -9, '', '', ' ', false), \
                 (4, 0, 0, 'Infinity', '-Infinity', '9999-12-31', '2026-11-20 23:59:59.999999', \
                  NULL, 0, 0, ',', '\"', '()', NULL), \
                 (5, 1, 1, 1, 1, '2026-11-20', '2026-11-20 10:00:00', NULL, 1, 1, 'x', 'y', \
                  repeat('黄埔海关 \"A\", (B) ', 3000), NULL)"
            );
            conn.execute(&insert, (), None).unwrap();
            let cols = [
                "id", "i", "s", "f", "r", "d", "ts", "tz", "m", "n", "v", "c", "t",
            ];
            let plain = format!("SELECT {} FROM {table} ORDER BY id", cols.join(", "));
            let packing = packing_of(&conn, &plain)
                .unwrap()
                .expect("these columns pack");
            let packed = format!(
                "SELECT ROW({})::text FROM {table} ORDER BY id",
                cols.join(", ")
            );
            let read_packed = |sql: &str, packing: &Packing| {
                let cursor = conn.execute(sql, (), None).unwrap().unwrap();
                read(cursor, packing).unwrap()
            };
            let got = read_packed(&packed, &packing).expect("no value left to the column read");
            let want = read_source(&conn, driver, &plain, Vec::new(), None).unwrap();
            let values = |rows: Vec<SourceRow>| -> Vec<Vec<V>> {
                rows.into_iter().map(|r| r.values).collect()
            };
            let got = values(got);
            assert_eq!(got[0][12], V::Text("a \"q\" b, (c) \\ d\ne".into()));
            assert_eq!(got[2][10], V::Text("".into()));
            // Longer than any buffer: read whole.
            let long = "黄埔海关 \"A\", (B) ".repeat(3000);
            assert_eq!(got[4][12], V::Text(long.as_str().into()));
            same(&got, &values(want), "packed");

            // A boolean comes through psqlODBC as 1 or 0: not packed.
            let with_bool = format!("SELECT id, ok FROM {table} ORDER BY id");
            assert_eq!(
                packing_of(&conn, &with_bool).unwrap().err().as_deref(),
                Some("column ok is bool")
            );
            // A date past 9999 is psqlODBC's to read.
            conn.execute(
                &format!("INSERT INTO {table} (id, d) VALUES (5, '12026-01-01')"),
                (),
                None,
            )
            .unwrap();
            let dates = format!("SELECT ROW(id, d)::text FROM {table} ORDER BY id");
            let dp = packing_of(&conn, &format!("SELECT id, d FROM {table}"))
                .unwrap()
                .unwrap();
            assert!(read_packed(&dates, &dp).is_none());
            conn.execute(&format!("DROP TABLE {table}"), (), None)
                .unwrap();
        }
    }
}

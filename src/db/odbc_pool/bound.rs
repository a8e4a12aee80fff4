//! Source rows with every column bound to a buffer: one SQLFetch fills a whole row, where the
//! per-value path ([`super::read_value`]) makes one SQLGetData call per value, each through
//! the driver manager's handle checks and locks and the driver's own entry code. A text or
//! binary value longer than its buffer is read again whole with SQLGetData, which needs
//! SQLGetData on bound columns (`SQL_GD_BOUND`); a new connection tries that once
//! ([`works`]) and uses the per-value path where it does not.

use super::{SourceKind, date_value, timestamp_value};
use crate::db::odbc_any::TextCoding;
use crate::db::source::RowTexts;
use crate::value::Value as SourceValue;
use anyhow::{Context, Result, bail};
use odbc_api::handles::{CData, CDataMut, SqlResult, Statement, StatementRef};
use odbc_api::sys::{self, CDataType, NO_TOTAL, NULL_DATA};
use odbc_api::{DataType, Nullable};
use std::ffi::c_void;

/// Bytes a bound text or binary buffer holds at most: a column declared longer is bound this
/// wide and its longer values are read again whole.
const WIDTH_CAP: usize = 8 * 1024;
/// Bytes for a column whose driver gives no length (TEXT, CLOB, BLOB).
const WIDTH_UNKNOWN: usize = 1024;

/// One column's buffer, its value as the last fetch left it.
enum Slot {
    Int(i64),
    Float(f64),
    Bit(u8),
    Date(sys::Date),
    Timestamp(sys::Timestamp),
    /// UTF-8 text (SQL_C_CHAR) with room for its terminating NUL.
    Narrow(Box<[u8]>),
    /// UTF-16 text (SQL_C_WCHAR) with room for its terminating NUL.
    Wide(Box<[u16]>),
    Binary(Box<[u8]>),
}

struct Column {
    kind: SourceKind,
    slot: Slot,
    /// Length in bytes, `NULL_DATA` or `NO_TOTAL`, as the driver set it.
    ind: isize,
}

impl Column {
    fn new(t: DataType, coding: TextCoding) -> Column {
        let kind = SourceKind::of(t);
        let width = |len: Option<std::num::NonZeroUsize>| {
            len.map_or(WIDTH_UNKNOWN, |n| n.get().min(WIDTH_CAP))
        };
        let slot = match kind {
            SourceKind::Int => Slot::Int(0),
            SourceKind::Float => Slot::Float(0.0),
            SourceKind::Bool => Slot::Bit(0),
            SourceKind::Date => Slot::Date(sys::Date::default()),
            SourceKind::Timestamp => Slot::Timestamp(sys::Timestamp::default()),
            SourceKind::Bytes => Slot::Binary(vec![0; width(t.column_size())].into()),
            // Four bytes or two units per character hold any text of the declared length
            // whole, whatever the database's encoding.
            SourceKind::Decimal | SourceKind::Text => match coding {
                TextCoding::Utf8 => Slot::Narrow(vec![0; width(t.utf8_len()) + 1].into()),
                TextCoding::Wide => Slot::Wide(vec![0; width(t.utf16_len()) + 1].into()),
            },
        };
        Column { kind, slot, ind: 0 }
    }

    /// The bytes of a text or binary value the buffer holds whole, or None when it was cut
    /// short (and must be read again).
    fn whole(&self) -> Option<&[u8]> {
        let (bytes, room): (&[u8], usize) = match &self.slot {
            Slot::Narrow(b) => (b, b.len() - 1),
            Slot::Binary(b) => (b, b.len()),
            Slot::Wide(w) => (u16_bytes(w), (w.len() - 1) * 2),
            _ => return None,
        };
        let len = usize::try_from(self.ind).ok()?;
        (self.ind != NO_TOTAL && len <= room).then(|| &bytes[..len])
    }
}

/// UTF-16 units as their bytes, in memory order.
fn u16_bytes(w: &[u16]) -> &[u8] {
    // SAFETY: u16 has no padding and u8 has alignment 1; the length is in bytes.
    unsafe { std::slice::from_raw_parts(w.as_ptr().cast::<u8>(), std::mem::size_of_val(w)) }
}

unsafe impl CData for Column {
    fn cdata_type(&self) -> CDataType {
        match self.slot {
            Slot::Int(_) => CDataType::SBigInt,
            Slot::Float(_) => CDataType::Double,
            Slot::Bit(_) => CDataType::Bit,
            Slot::Date(_) => CDataType::TypeDate,
            Slot::Timestamp(_) => CDataType::TypeTimestamp,
            Slot::Narrow(_) => CDataType::Char,
            Slot::Wide(_) => CDataType::WChar,
            Slot::Binary(_) => CDataType::Binary,
        }
    }

    fn indicator_ptr(&self) -> *const isize {
        &self.ind
    }

    fn value_ptr(&self) -> *const c_void {
        match &self.slot {
            Slot::Int(x) => (x as *const i64).cast(),
            Slot::Float(x) => (x as *const f64).cast(),
            Slot::Bit(x) => (x as *const u8).cast(),
            Slot::Date(x) => (x as *const sys::Date).cast(),
            Slot::Timestamp(x) => (x as *const sys::Timestamp).cast(),
            Slot::Narrow(b) | Slot::Binary(b) => b.as_ptr().cast(),
            Slot::Wide(w) => w.as_ptr().cast(),
        }
    }

    fn buffer_length(&self) -> isize {
        let bytes = match &self.slot {
            Slot::Int(_) => size_of::<i64>(),
            Slot::Float(_) => size_of::<f64>(),
            Slot::Bit(_) => 1,
            Slot::Date(_) => size_of::<sys::Date>(),
            Slot::Timestamp(_) => size_of::<sys::Timestamp>(),
            Slot::Narrow(b) | Slot::Binary(b) => b.len(),
            Slot::Wide(w) => w.len() * 2,
        };
        bytes as isize
    }
}

unsafe impl CDataMut for Column {
    fn mut_indicator_ptr(&mut self) -> *mut isize {
        &mut self.ind
    }

    fn mut_value_ptr(&mut self) -> *mut c_void {
        self.value_ptr().cast_mut()
    }
}

/// A buffer SQLGetData reads part of a long value into.
struct Chunk<'a> {
    ctype: CDataType,
    buf: &'a mut [u8],
    ind: isize,
}

unsafe impl CData for Chunk<'_> {
    fn cdata_type(&self) -> CDataType {
        self.ctype
    }

    fn indicator_ptr(&self) -> *const isize {
        &self.ind
    }

    fn value_ptr(&self) -> *const c_void {
        self.buf.as_ptr().cast()
    }

    fn buffer_length(&self) -> isize {
        self.buf.len() as isize
    }
}

unsafe impl CDataMut for Chunk<'_> {
    fn mut_indicator_ptr(&mut self) -> *mut isize {
        &mut self.ind
    }

    fn mut_value_ptr(&mut self) -> *mut c_void {
        self.buf.as_mut_ptr().cast()
    }
}

/// Reads a value whole into `out` (its bytes, without a terminator) with SQLGetData, part by
/// part straight into `out`; false for NULL.
fn get_whole(
    stmt: &mut StatementRef<'_>,
    col: u16,
    ctype: CDataType,
    out: &mut Vec<u8>,
) -> Result<bool> {
    let term = match ctype {
        CDataType::Char => 1,
        CDataType::WChar => 2,
        _ => 0,
    };
    out.clear();
    // Room for the next part, without its terminator (even, so UTF-16 units stay whole).
    let mut room = WIDTH_CAP;
    loop {
        let start = out.len();
        out.resize(start + room + term, 0);
        let mut chunk = Chunk {
            ctype,
            buf: &mut out[start..],
            ind: 0,
        };
        match stmt.get_data(col, &mut chunk) {
            // Nothing more: the last part ended exactly at the end of its room.
            SqlResult::NoData => {
                out.truncate(start);
                return Ok(true);
            }
            SqlResult::Success(()) | SqlResult::SuccessWithInfo(()) => {}
            r => {
                r.into_result_without_logging(stmt)?;
                bail!("SQLGetData asked for more than data");
            }
        }
        let ind = chunk.ind;
        if ind == NULL_DATA {
            out.clear();
            return Ok(false);
        }
        match usize::try_from(ind) {
            Ok(len) if len <= room => {
                out.truncate(start + len);
                return Ok(true);
            }
            Ok(len) => {
                out.truncate(start + room);
                // The rest in one more call.
                room = len - room;
            }
            Err(_) if ind == NO_TOTAL => out.truncate(start + room),
            Err(_) => bail!("the driver gave a length of {ind} for column {col}"),
        }
    }
}

/// Buffers for the columns of one result, bound while its rows are read.
pub(super) struct BoundRow {
    columns: Box<[Column]>,
    /// A value read again whole, and a UTF-16 one decoded.
    long: Vec<u8>,
    decoded: String,
    /// The row's text values, shared as the native PostgreSQL decoder does.
    texts: RowTexts,
}

impl BoundRow {
    pub(super) fn new(types: &[DataType], coding: TextCoding) -> BoundRow {
        BoundRow {
            columns: types.iter().map(|t| Column::new(*t, coding)).collect(),
            long: Vec::new(),
            decoded: String::new(),
            texts: RowTexts::default(),
        }
    }

    /// Binds the buffers, hands every row to `each` until it says stop (false), and unbinds
    /// them.
    pub(super) fn read(
        &mut self,
        mut stmt: StatementRef<'_>,
        names: &[String],
        mut each: impl FnMut(Vec<SourceValue>) -> bool,
    ) -> Result<()> {
        for (i, col) in (1u16..).zip(self.columns.iter_mut()) {
            // SAFETY: `columns` is a boxed slice that is neither moved nor resized while
            // bound, and is unbound below before `self` can be dropped or used otherwise.
            unsafe { stmt.bind_col(i, col) }.into_result(&stmt)?;
        }
        let result = self.rows(&mut stmt, names, &mut each);
        let unbound = stmt.unbind_cols().into_result(&stmt);
        result?;
        unbound?;
        Ok(())
    }

    fn rows(
        &mut self,
        stmt: &mut StatementRef<'_>,
        names: &[String],
        each: &mut impl FnMut(Vec<SourceValue>) -> bool,
    ) -> Result<()> {
        loop {
            // SAFETY: the bound buffers live in `self.columns` (see `read`).
            match unsafe { stmt.fetch() } {
                SqlResult::NoData => return Ok(()),
                // With info: a value longer than its buffer, read again below.
                SqlResult::Success(()) | SqlResult::SuccessWithInfo(()) => {}
                r => {
                    r.into_result_without_logging(stmt)?;
                    bail!("SQLFetch asked for data");
                }
            }
            let mut values = Vec::with_capacity(self.columns.len());
            for (i, col) in (1u16..).zip(self.columns.iter()) {
                let v = value(
                    stmt,
                    i,
                    col,
                    &mut self.long,
                    &mut self.decoded,
                    &mut self.texts,
                )
                .with_context(|| {
                    format!("column {} ({:?})", names[usize::from(i) - 1], col.kind)
                })?;
                values.push(v);
            }
            self.texts.fill(&mut values, names)?;
            if !each(values) {
                return Ok(());
            }
        }
    }
}

/// The value of a fetched column; a text value is NULL until `texts` fills it in.
fn value(
    stmt: &mut StatementRef<'_>,
    i: u16,
    col: &Column,
    long: &mut Vec<u8>,
    decoded: &mut String,
    texts: &mut RowTexts,
) -> Result<SourceValue> {
    if col.ind == NULL_DATA {
        return Ok(SourceValue::Null);
    }
    let bytes = match &col.slot {
        Slot::Int(x) => return Ok(SourceValue::Int(*x)),
        Slot::Float(x) => return Ok(SourceValue::Float(*x)),
        Slot::Bit(x) => return Ok(SourceValue::Bool(*x != 0)),
        Slot::Date(d) => return date_value(Nullable::new(*d)),
        Slot::Timestamp(t) => return timestamp_value(Nullable::new(*t)),
        _ => match col.whole() {
            Some(b) => b,
            None => {
                if !get_whole(stmt, i, col.cdata_type(), long)? {
                    return Ok(SourceValue::Null);
                }
                long
            }
        },
    };
    let utf8 = match &col.slot {
        Slot::Binary(_) => return Ok(SourceValue::Bytes(bytes.to_vec())),
        Slot::Wide(_) => {
            decoded.clear();
            let units = bytes
                .chunks_exact(2)
                .map(|u| u16::from_ne_bytes([u[0], u[1]]));
            for c in char::decode_utf16(units) {
                decoded.push(c?);
            }
            decoded.as_bytes()
        }
        _ => bytes,
    };
    if col.kind == SourceKind::Decimal {
        return Ok(SourceValue::Decimal(
            std::str::from_utf8(utf8)?.trim().to_string(),
        ));
    }
    texts.push(usize::from(i) - 1, utf8);
    Ok(SourceValue::Null)
}

/// Whether this connection's driver reads a value again with SQLGetData after a bound buffer
/// cut it short: a literal longer than its buffer comes back whole, and the integer bound
/// beside it. `FROM DUAL` for DM and Oracle; any error means no.
pub(super) fn works(conn: &odbc_api::Connection<'_>) -> bool {
    const LONG: &str = "qianzhi bound-fetch probe 0123456789";
    for from in ["", " FROM DUAL"] {
        let sql = format!("SELECT '{LONG}', 7{from}");
        let Ok(Some(mut cursor)) = conn.execute(&sql, (), None) else {
            continue;
        };
        // VARCHAR(1): a buffer of five bytes, far shorter than the literal.
        let one = DataType::Varchar {
            length: std::num::NonZeroUsize::new(1),
        };
        let mut row = BoundRow::new(&[one, DataType::BigInt], TextCoding::Utf8);
        let mut seen = Vec::new();
        let names = ["a".to_string(), "b".to_string()];
        let read = row.read(
            odbc_api::handles::AsStatementRef::as_stmt_ref(&mut cursor),
            &names,
            |values| {
                seen.push(values);
                true
            },
        );
        return read.is_ok()
            && matches!(
                &seen[..],
                [v] if matches!(&v[..], [SourceValue::Text(t), SourceValue::Int(7)] if t.as_str() == LONG)
            );
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    /// Buffers hold any value of the declared length whole, up to the cap; text columns as the
    /// connection's coding.
    #[test]
    fn buffers_fit_the_declared_lengths() {
        let nz = NonZeroUsize::new;
        for (t, coding, want) in [
            (DataType::Varchar { length: nz(100) }, TextCoding::Utf8, 401),
            (DataType::Varchar { length: nz(100) }, TextCoding::Wide, 201),
            (DataType::WVarchar { length: nz(4) }, TextCoding::Utf8, 17),
            (
                DataType::Varchar {
                    length: nz(100_000),
                },
                TextCoding::Utf8,
                WIDTH_CAP + 1,
            ),
            (
                DataType::LongVarchar { length: None },
                TextCoding::Utf8,
                WIDTH_UNKNOWN + 1,
            ),
            (
                DataType::Numeric {
                    precision: 30,
                    scale: 2,
                },
                TextCoding::Utf8,
                33,
            ),
            (DataType::Varbinary { length: nz(16) }, TextCoding::Utf8, 16),
        ] {
            let col = Column::new(t, coding);
            let units = match &col.slot {
                Slot::Narrow(b) | Slot::Binary(b) => b.len(),
                Slot::Wide(w) => w.len(),
                _ => 0,
            };
            assert_eq!(units, want, "{t:?} {coding:?}");
        }
        assert!(matches!(
            Column::new(DataType::Timestamp { precision: 6 }, TextCoding::Utf8).slot,
            Slot::Timestamp(_)
        ));
    }

    /// A value is taken from its buffer only when it fits whole (VARCHAR(1): four bytes and
    /// the NUL, or two units and the NUL).
    #[test]
    fn only_whole_values_come_from_the_buffer() {
        let mut col = Column::new(
            DataType::Varchar {
                length: NonZeroUsize::new(1),
            },
            TextCoding::Utf8,
        );
        if let Slot::Narrow(b) = &mut col.slot {
            b[..4].copy_from_slice("前\0".as_bytes());
        }
        for (ind, want) in [
            (3, Some("前".as_bytes())),
            (0, Some(&b""[..])),
            (4, Some("前\0".as_bytes())),
            (5, None),
            (NO_TOTAL, None),
        ] {
            col.ind = ind;
            assert_eq!(col.whole(), want, "{ind}");
        }
        let mut w = Column::new(
            DataType::Varchar {
                length: NonZeroUsize::new(1),
            },
            TextCoding::Wide,
        );
        w.ind = 4;
        assert_eq!(w.whole().map(<[u8]>::len), Some(4));
        w.ind = 6;
        assert_eq!(w.whole(), None);
    }
}

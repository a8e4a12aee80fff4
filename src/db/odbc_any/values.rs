//! Values across the ODBC driver: result rows typed by their column types, bound parameters,
//! text as UTF-16 or UTF-8 ([`TextCoding`]), and driver errors with their SQLSTATE.

use odbc_api::parameter::{InputParameter, VarBinaryBox, VarCharBox, VarWCharBox};
use odbc_api::{Bit, Cursor, CursorImpl, DataType, Nullable, ResultSetMetadata};
use sqlx_core::any::{AnyColumn, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue, AnyValueKind};
use sqlx_core::error::{DatabaseError, Error, ErrorKind};
use sqlx_core::ext::ustr::UStr;
use std::borrow::Cow;
use std::sync::Arc;

/// Every row of a result, each value typed by its column.
pub(super) fn read_rows(
    mut cursor: CursorImpl<odbc_api::handles::StatementRef<'_>>,
    coding: TextCoding,
) -> Result<Vec<AnyRow>, Error> {
    let n = u16::try_from(cursor.num_result_cols().map_err(odbc_error)?).unwrap_or(0);
    let mut columns = Vec::with_capacity(usize::from(n));
    let mut kinds = Vec::with_capacity(usize::from(n));
    let mut names = sqlx_core::HashMap::new();
    for i in 1..=n {
        let name = cursor.col_name(i).map_err(odbc_error)?;
        let kind = Kind::of(column_type(&mut cursor, i).map_err(odbc_error)?);
        let ordinal = usize::from(i - 1);
        names.insert(UStr::new(&name), ordinal);
        columns.push(AnyColumn {
            ordinal,
            name: UStr::new(&name),
            type_info: AnyTypeInfo {
                kind: kind.type_kind(),
            },
        });
        kinds.push(kind);
    }
    let names = Arc::new(names);
    let mut rows = Vec::new();
    let mut text = TextBufs::default();
    let mut bytes = Vec::new();
    while let Some(mut row) = cursor.next_row().map_err(odbc_error)? {
        let mut values = Vec::with_capacity(kinds.len());
        for (i, kind) in (1..=n).zip(&kinds) {
            let null = AnyValueKind::Null(kind.type_kind());
            let v = match kind {
                Kind::Int => {
                    let mut x = Nullable::<i64>::null();
                    row.get_data(i, &mut x).map_err(odbc_error)?;
                    x.into_opt().map_or(null, AnyValueKind::BigInt)
                }
                Kind::Float => {
                    let mut x = Nullable::<f64>::null();
                    row.get_data(i, &mut x).map_err(odbc_error)?;
                    x.into_opt().map_or(null, AnyValueKind::Double)
                }
                Kind::Bool => {
                    let mut x = Nullable::<Bit>::null();
                    row.get_data(i, &mut x).map_err(odbc_error)?;
                    x.into_opt()
                        .map_or(null, |b| AnyValueKind::Bool(b.as_bool()))
                }
                Kind::Blob => {
                    if row.get_binary(i, &mut bytes).map_err(odbc_error)? {
                        AnyValueKind::Blob(Arc::new(std::mem::take(&mut bytes)))
                    } else {
                        null
                    }
                }
                Kind::Text | Kind::Numeric => {
                    match coding.read(&mut row, i, &mut text).map_err(Error::Decode)? {
                        Some(s) => match (kind, s.trim().parse::<i64>()) {
                            (Kind::Numeric, Ok(n)) => AnyValueKind::BigInt(n),
                            _ => AnyValueKind::Text(Arc::new(s)),
                        },
                        None => null,
                    }
                }
            };
            values.push(AnyValue { kind: v });
        }
        rows.push(AnyRow {
            column_names: names.clone(),
            columns: columns.clone(),
            values,
        });
    }
    Ok(rows)
}

/// The SQL type of a result column, as `ResultSetMetadata::col_data_type` gives it, but asked
/// as SQL_DESC_TYPE rather than SQL_DESC_CONCISE_TYPE where the two are the same (all but
/// dates and times): psqlODBC answers the concise type by looking the column up in the catalog
/// of its table (about 50,000 instructions a column, and a catalog query the first time on each
/// connection), the other from the result's own description.
pub(crate) fn column_type(
    cursor: &mut impl ResultSetMetadata,
    col: u16,
) -> Result<DataType, odbc_api::Error> {
    use odbc_api::handles::Statement;
    use odbc_api::sys::{Desc, SqlDataType};
    let verbose = {
        let mut stmt = cursor.as_stmt_ref();
        // SAFETY: SQL_DESC_TYPE is a numeric attribute.
        unsafe { stmt.numeric_col_attribute(Desc::Type, col) }.into_result(&stmt)?
    };
    if verbose == 9 {
        // SQL_DATETIME: which one only the concise type says (psqlODBC and MariaDB do not
        // give SQL_DESC_DATETIME_INTERVAL_CODE), so these few columns are asked that way.
        return cursor.col_data_type(col);
    }
    let small = |n: isize| i16::try_from(n).unwrap_or(0);
    let size = |n: isize| usize::try_from(n).unwrap_or(0);
    Ok(match SqlDataType(i16::try_from(verbose).unwrap_or(0)) {
        SqlDataType::EXT_VAR_BINARY => DataType::Varbinary {
            length: cursor.col_octet_length(col)?,
        },
        SqlDataType::EXT_LONG_VAR_BINARY => DataType::LongVarbinary {
            length: cursor.col_octet_length(col)?,
        },
        SqlDataType::EXT_BINARY => DataType::Binary {
            length: cursor.col_octet_length(col)?,
        },
        SqlDataType::EXT_W_VARCHAR => DataType::WVarchar {
            length: cursor.col_display_size(col)?,
        },
        SqlDataType::EXT_W_CHAR => DataType::WChar {
            length: cursor.col_display_size(col)?,
        },
        SqlDataType::EXT_LONG_VARCHAR => DataType::LongVarchar {
            length: cursor.col_display_size(col)?,
        },
        SqlDataType::EXT_W_LONG_VARCHAR => DataType::WLongVarchar {
            length: cursor.col_display_size(col)?,
        },
        SqlDataType::CHAR => DataType::Char {
            length: cursor.col_display_size(col)?,
        },
        SqlDataType::VARCHAR => DataType::Varchar {
            length: cursor.col_display_size(col)?,
        },
        SqlDataType::NUMERIC => DataType::Numeric {
            precision: size(cursor.col_precision(col)?),
            scale: small(cursor.col_scale(col)?),
        },
        SqlDataType::DECIMAL => DataType::Decimal {
            precision: size(cursor.col_precision(col)?),
            scale: small(cursor.col_scale(col)?),
        },
        SqlDataType::INTEGER => DataType::Integer,
        SqlDataType::SMALLINT => DataType::SmallInt,
        SqlDataType::FLOAT => DataType::Float {
            precision: size(cursor.col_precision(col)?),
        },
        SqlDataType::REAL => DataType::Real,
        SqlDataType::DOUBLE => DataType::Double,
        SqlDataType::EXT_BIG_INT => DataType::BigInt,
        SqlDataType::EXT_TINY_INT => DataType::TinyInt,
        SqlDataType::EXT_BIT => DataType::Bit,
        // Anything else as odbc-api describes it (read as text).
        _ => cursor.col_data_type(col)?,
    })
}

/// How text crosses the driver: as UTF-8 (SQL_C_CHAR) where the driver passes it through
/// unchanged, as UTF-16 (SQL_C_WCHAR) otherwise.
///
/// A Unicode driver converts narrow text between the database and the process's locale: with
/// a UTF-8 locale (`LANG=C.UTF-8`, `zh_CN.UTF-8`) and a UTF-8 connection that is no conversion
/// at all, and UTF-8 saves the driver a conversion per value each way (psqlODBC: about a third
/// of the time of a run). In any other locale narrow Chinese text would be mangled, so a new
/// connection asks ([`TextCoding::of`]) and falls back to UTF-16, which every Unicode driver
/// converts itself. MariaDB and MySQL always use UTF-8: their Connector/ODBC (3.1) miscounts
/// a wide value whose UTF-8 form is longer than its UTF-16 one (all Chinese), storing a NUL
/// after it and dropping its last character when reading it back; their narrow text is the
/// connection's character set (utf8mb4 unless the connection string sets CHARSET= otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextCoding {
    Wide,
    Utf8,
}

/// The buffers text values are fetched into, kept over the rows of a result. odbc-api clears
/// a buffer's whole capacity before every value, so they start small and a large one (a long
/// CLOB) is given back after its value.
pub(crate) struct TextBufs {
    wide: Vec<u16>,
    narrow: Vec<u8>,
    /// A wide value decoded, so that both codings lend UTF-8 ([`TextCoding::read_utf8`]).
    decoded: String,
}

/// Units a text buffer starts with, and the most it keeps between values.
const TEXT_START: usize = 256;
const TEXT_KEPT: usize = 16 * 1024;

/// The text a new connection sends and reads back narrow: Chinese, and a character outside
/// the BMP (four bytes in UTF-8, a surrogate pair in UTF-16).
const PROBE: &str = "前置机 𠀀";

impl Default for TextBufs {
    fn default() -> Self {
        TextBufs {
            wide: Vec::with_capacity(TEXT_START),
            narrow: Vec::with_capacity(TEXT_START),
            decoded: String::new(),
        }
    }
}

impl TextCoding {
    /// The coding of a connection just opened: UTF-8 on MariaDB and MySQL; elsewhere UTF-8
    /// when a Chinese literal and the same text bound as a parameter both come back narrow
    /// byte for byte, UTF-16 when they do not or the probe fails.
    pub(crate) fn of(conn: &odbc_api::Connection<'_>) -> Result<TextCoding, odbc_api::Error> {
        let dbms = conn.database_management_system_name()?;
        if dbms.contains("MariaDB") || dbms.contains("MySQL") || narrow_round_trips(conn) {
            return Ok(TextCoding::Utf8);
        }
        Ok(TextCoding::Wide)
    }

    pub(crate) fn param(self, s: Option<&str>) -> Box<dyn InputParameter> {
        match (self, s) {
            (TextCoding::Wide, Some(s)) => Box::new(VarWCharBox::from_str_slice(s)),
            (TextCoding::Wide, None) => Box::new(VarWCharBox::null()),
            (TextCoding::Utf8, Some(s)) => Box::new(VarCharBox::from_string(s.to_string())),
            (TextCoding::Utf8, None) => Box::new(VarCharBox::null()),
        }
    }

    /// As [`TextCoding::param`] for a string the parameter can keep (UTF-8: not copied).
    pub(crate) fn param_string(self, s: String) -> Box<dyn InputParameter> {
        match self {
            TextCoding::Wide => Box::new(VarWCharBox::from_str_slice(&s)),
            TextCoding::Utf8 => Box::new(VarCharBox::from_string(s)),
        }
    }

    /// One text value of the current row, or None for NULL.
    pub(crate) fn read(
        self,
        row: &mut odbc_api::CursorRow<'_>,
        col: u16,
        bufs: &mut TextBufs,
    ) -> Result<Option<String>, sqlx_core::error::BoxDynError> {
        match self.read_utf8(row, col, bufs)? {
            Some(bytes) => Ok(Some(std::str::from_utf8(bytes)?.to_owned())),
            None => Ok(None),
        }
    }

    /// One text value of the current row as UTF-8 bytes lent from `bufs` until the next
    /// value, or None for NULL. Narrow values are as the driver gave them, not yet checked
    /// (a source row checks its text values together, `source::RowTexts`); wide ones are
    /// decoded, so valid.
    pub(crate) fn read_utf8<'b>(
        self,
        row: &mut odbc_api::CursorRow<'_>,
        col: u16,
        bufs: &'b mut TextBufs,
    ) -> Result<Option<&'b [u8]>, sqlx_core::error::BoxDynError> {
        if bufs.wide.capacity() > TEXT_KEPT {
            bufs.wide = Vec::with_capacity(TEXT_START);
        }
        if bufs.narrow.capacity() > TEXT_KEPT {
            bufs.narrow = Vec::with_capacity(TEXT_START);
        }
        if bufs.decoded.capacity() > TEXT_KEPT {
            bufs.decoded = String::new();
        }
        Ok(match self {
            TextCoding::Wide => {
                if !row.get_wide_text(col, &mut bufs.wide)? {
                    return Ok(None);
                }
                bufs.decoded.clear();
                for c in char::decode_utf16(bufs.wide.iter().copied()) {
                    bufs.decoded.push(c?);
                }
                Some(bufs.decoded.as_bytes())
            }
            TextCoding::Utf8 => match row.get_text(col, &mut bufs.narrow)? {
                true => Some(&bufs.narrow),
                false => None,
            },
        })
    }
}

/// Whether [`PROBE`] comes back unchanged as narrow text, as a literal and as a parameter.
/// `FROM DUAL` for DM and Oracle; any error means no.
fn narrow_round_trips(conn: &odbc_api::Connection<'_>) -> bool {
    for from in ["", " FROM DUAL"] {
        let sql = format!("SELECT '{PROBE}', CAST(? AS VARCHAR(40)){from}");
        let param = VarCharBox::from_string(PROBE.to_string());
        let Ok(Some(mut cursor)) = conn.execute(&sql, &param, None) else {
            continue;
        };
        let Ok(Some(mut row)) = cursor.next_row() else {
            return false;
        };
        let mut buf = Vec::new();
        return [1, 2]
            .into_iter()
            .all(|col| matches!(row.get_text(col, &mut buf), Ok(true)) && buf == PROBE.as_bytes());
    }
    false
}

/// How a column's values are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Int,
    Float,
    Bool,
    Blob,
    /// NUMERIC/DECIMAL: an integer when the value is one, its exact text otherwise.
    Numeric,
    Text,
}

impl Kind {
    /// As a source column of that type is read (`odbc_pool::SourceKind`), with dates and
    /// times as text: the control tables hold none, and `Any` has no kind for them.
    pub(super) fn of(t: DataType) -> Kind {
        use crate::db::odbc_pool::SourceKind;
        match SourceKind::of(t) {
            SourceKind::Int => Kind::Int,
            SourceKind::Float => Kind::Float,
            SourceKind::Bool => Kind::Bool,
            SourceKind::Bytes => Kind::Blob,
            SourceKind::Decimal => Kind::Numeric,
            SourceKind::Date | SourceKind::Timestamp | SourceKind::Text => Kind::Text,
        }
    }

    fn type_kind(self) -> AnyTypeInfoKind {
        match self {
            Kind::Int | Kind::Numeric => AnyTypeInfoKind::BigInt,
            Kind::Float => AnyTypeInfoKind::Double,
            Kind::Bool => AnyTypeInfoKind::Bool,
            Kind::Blob => AnyTypeInfoKind::Blob,
            Kind::Text => AnyTypeInfoKind::Text,
        }
    }
}

/// One bound value as an ODBC parameter (text as [`TextCoding`] says).
pub(super) fn param(v: AnyValueKind, coding: TextCoding) -> Result<Box<dyn InputParameter>, Error> {
    let int = |n: Option<i64>| -> Box<dyn InputParameter> {
        Box::new(n.map_or_else(Nullable::null, Nullable::new))
    };
    let float = |f: Option<f64>| -> Box<dyn InputParameter> {
        Box::new(f.map_or_else(Nullable::null, Nullable::new))
    };
    Ok(match v {
        AnyValueKind::Null(k) => match k {
            AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
                int(None)
            }
            AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => float(None),
            AnyTypeInfoKind::Blob => Box::new(VarBinaryBox::null()),
            _ => coding.param(None),
        },
        AnyValueKind::Bool(b) => Box::new(Nullable::new(Bit::from_bool(b))),
        AnyValueKind::SmallInt(n) => int(Some(n.into())),
        AnyValueKind::Integer(n) => int(Some(n.into())),
        AnyValueKind::BigInt(n) => int(Some(n)),
        AnyValueKind::Real(f) => float(Some(f.into())),
        AnyValueKind::Double(f) => float(Some(f)),
        // Owned where the value is not shared: a call body can be hundreds of kilobytes.
        AnyValueKind::Text(s) => coding.param_string(Arc::unwrap_or_clone(s)),
        AnyValueKind::TextSlice(s) => coding.param(Some(&s)),
        AnyValueKind::Blob(b) => Box::new(VarBinaryBox::from_vec(b.to_vec())),
        // A kind a later sqlx adds; never the value (it may be a source row's ID number).
        _ => {
            return Err(Error::Encode(
                "ODBC cannot bind a value of this kind".into(),
            ));
        }
    })
}

/// An error the driver reported, with its SQLSTATE and native code, for
/// `retry::db_code`; the text has any password hidden.
#[derive(Debug)]
pub struct OdbcDatabaseError {
    pub state: String,
    pub native: i32,
    message: String,
}

impl std::fmt::Display for OdbcDatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OdbcDatabaseError {}

impl DatabaseError for OdbcDatabaseError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.state))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.state.as_str() {
            "23505" => ErrorKind::UniqueViolation,
            "23503" => ErrorKind::ForeignKeyViolation,
            "23502" => ErrorKind::NotNullViolation,
            "23514" => ErrorKind::CheckViolation,
            // MySQL/MariaDB and many drivers report every integrity error as 23000.
            "23000" if self.native == 1062 => ErrorKind::UniqueViolation,
            _ => ErrorKind::Other,
        }
    }
}

pub(super) fn odbc_error(e: odbc_api::Error) -> Error {
    // On one line, as log lines are read and searched.
    let text = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let message = crate::db::redact_url(&text);
    match &e {
        odbc_api::Error::Diagnostics { record, .. } => {
            Error::Database(Box::new(OdbcDatabaseError {
                state: record.state.as_str().to_string(),
                native: record.native_error,
                message,
            }))
        }
        _ => Error::Io(std::io::Error::other(message)),
    }
}

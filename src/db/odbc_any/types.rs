//! The types sqlx's `Database` trait asks for besides the connection. `Any` reads rows as
//! `AnyRow` through the connection's `AnyConnectionBackend` side, so these wrap `Any`'s own.

use super::Odbc;
use sqlx_core::Either;
use sqlx_core::any::{AnyTypeInfo, AnyValue, AnyValueKind};
use sqlx_core::error::Error;
use sqlx_core::sql_str::SqlStr;
use std::borrow::Cow;

// The rest is what sqlx's `Database` trait asks for; `Any` reads rows as `AnyRow`, so these
// wrap `Any`'s own types.

#[derive(Debug, Clone, PartialEq)]
pub struct OdbcTypeInfo(AnyTypeInfo);

impl std::fmt::Display for OdbcTypeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl sqlx_core::type_info::TypeInfo for OdbcTypeInfo {
    fn is_null(&self) -> bool {
        self.0.is_null()
    }

    fn name(&self) -> &str {
        self.0.name()
    }
}

#[derive(Debug, Clone)]
pub struct OdbcColumn {
    ordinal: usize,
    name: String,
    type_info: OdbcTypeInfo,
}

impl sqlx_core::column::Column for OdbcColumn {
    type Database = Odbc;

    fn ordinal(&self) -> usize {
        self.ordinal
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn type_info(&self) -> &OdbcTypeInfo {
        &self.type_info
    }
}

pub struct OdbcRow {
    columns: Vec<OdbcColumn>,
    values: Vec<OdbcValue>,
}

impl sqlx_core::row::Row for OdbcRow {
    type Database = Odbc;

    fn columns(&self) -> &[OdbcColumn] {
        &self.columns
    }

    fn try_get_raw<I>(&self, index: I) -> Result<OdbcValueRef<'_>, Error>
    where
        I: sqlx_core::column::ColumnIndex<Self>,
    {
        let i = index.index(self)?;
        self.values
            .get(i)
            .map(|v| OdbcValueRef(&v.0))
            .ok_or(Error::ColumnIndexOutOfBounds {
                index: i,
                len: self.values.len(),
            })
    }
}

#[derive(Debug, Clone)]
pub struct OdbcValue(AnyValueKind);

fn type_info_of(v: &AnyValueKind) -> OdbcTypeInfo {
    use sqlx_core::value::Value;
    OdbcTypeInfo(AnyValue { kind: v.clone() }.type_info().into_owned())
}

impl sqlx_core::value::Value for OdbcValue {
    type Database = Odbc;

    fn as_ref(&self) -> OdbcValueRef<'_> {
        OdbcValueRef(&self.0)
    }

    fn type_info(&self) -> Cow<'_, OdbcTypeInfo> {
        Cow::Owned(type_info_of(&self.0))
    }

    fn is_null(&self) -> bool {
        matches!(self.0, AnyValueKind::Null(_))
    }
}

pub struct OdbcValueRef<'r>(&'r AnyValueKind);

impl<'r> sqlx_core::value::ValueRef<'r> for OdbcValueRef<'r> {
    type Database = Odbc;

    fn to_owned(&self) -> OdbcValue {
        OdbcValue(self.0.clone())
    }

    fn type_info(&self) -> Cow<'_, OdbcTypeInfo> {
        Cow::Owned(type_info_of(self.0))
    }

    fn is_null(&self) -> bool {
        matches!(self.0, AnyValueKind::Null(_))
    }
}

#[derive(Default)]
pub struct OdbcArguments(Vec<AnyValueKind>);

impl sqlx_core::arguments::Arguments for OdbcArguments {
    type Database = Odbc;

    fn reserve(&mut self, additional: usize, _size: usize) {
        self.0.reserve(additional);
    }

    fn add<'t, T>(&mut self, value: T) -> Result<(), sqlx_core::error::BoxDynError>
    where
        T: sqlx_core::encode::Encode<'t, Odbc> + sqlx_core::types::Type<Odbc>,
    {
        let _null = value.encode(&mut self.0)?;
        Ok(())
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl sqlx_core::arguments::IntoArguments<Odbc> for OdbcArguments {
    fn into_arguments(self) -> OdbcArguments {
        self
    }
}

#[derive(Debug, Clone)]
pub struct OdbcStatement {
    sql: SqlStr,
    columns: Vec<OdbcColumn>,
}

impl sqlx_core::statement::Statement for OdbcStatement {
    type Database = Odbc;

    fn into_sql(self) -> SqlStr {
        self.sql
    }

    fn sql(&self) -> &SqlStr {
        &self.sql
    }

    fn parameters(&self) -> Option<Either<&[OdbcTypeInfo], usize>> {
        None
    }

    fn columns(&self) -> &[OdbcColumn] {
        &self.columns
    }

    sqlx_core::impl_statement_query!(OdbcArguments);
}

//! A row image from the binary log, written back as SQL literals. The log carries values by
//! their storage type, not by the column's declaration: an `INT UNSIGNED` above 2³¹ comes as a
//! negative number unless the server logged signedness, a `SET` as its bitmap bytes, a
//! `TIMESTAMP` as seconds since the epoch. The loser's own column definitions
//! (`information_schema.COLUMNS`) say how each is meant. Strings go in as the bytes the loser
//! stored: the merge session runs with `SET NAMES binary` and backslash escapes on.

use mysql_async::binlog::value::BinlogValue;
use mysql_async::Value;

/// How one column's logged values become literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// An unsigned integer column of this many bits.
    Unsigned(u32),
    /// `TIMESTAMP`: logged as seconds (and microseconds) since the epoch, in UTC.
    Timestamp,
    /// `SET`: logged as its bitmap, little-endian.
    Set,
    /// Everything whose logged value is already what the column holds.
    Plain,
}

impl ColumnKind {
    /// From `information_schema.COLUMNS`: `DATA_TYPE` (`int`) and `COLUMN_TYPE` (`int(10) unsigned`).
    pub fn of(data_type: &str, column_type: &str) -> ColumnKind {
        let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" if unsigned => ColumnKind::Unsigned(8),
            "smallint" if unsigned => ColumnKind::Unsigned(16),
            "mediumint" if unsigned => ColumnKind::Unsigned(24),
            "int" | "integer" if unsigned => ColumnKind::Unsigned(32),
            "bigint" if unsigned => ColumnKind::Unsigned(64),
            "timestamp" => ColumnKind::Timestamp,
            "set" => ColumnKind::Set,
            _ => ColumnKind::Plain,
        }
    }
}

/// Appends the literal of one logged value to `out`; a column the image left out is `DEFAULT`.
pub fn push_literal(out: &mut String, value: Option<&BinlogValue<'_>>, kind: ColumnKind) -> Result<(), String> {
    let value = match value {
        None => {
            out.push_str("DEFAULT");
            return Ok(());
        }
        Some(BinlogValue::Value(value)) => value,
        Some(other) => return Err(format!("a value this merge cannot write back ({other:?})")),
    };
    match (kind, value) {
        (_, Value::NULL) => out.push_str("NULL"),
        (ColumnKind::Unsigned(bits), Value::Int(signed)) if *signed < 0 => {
            let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            out.push_str(&((*signed as u64) & mask).to_string());
        }
        (ColumnKind::Timestamp, Value::Int(seconds)) => push_timestamp(out, &seconds.to_string()),
        (ColumnKind::Timestamp, Value::Bytes(text)) => push_timestamp(out, &String::from_utf8_lossy(text)),
        (ColumnKind::Set, Value::Bytes(bitmap)) => {
            let bits = bitmap
                .iter()
                .rev()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            out.push_str(&bits.to_string());
        }
        // Exponent form: the shortest text that reads back as the very same number.
        (_, Value::Double(number)) => out.push_str(&format!("{number:e}")),
        (_, Value::Float(number)) => out.push_str(&format!("{number:e}")),
        (_, other) => out.push_str(&other.as_sql(false)),
    }
    Ok(())
}

/// `0` is the zero timestamp; anything else is that many seconds after the epoch (the merge
/// session's time zone is UTC).
fn push_timestamp(out: &mut String, seconds: &str) {
    let is_number = !seconds.is_empty() && seconds.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !is_number || seconds.trim_end_matches(['0', '.']).is_empty() {
        out.push_str("'0000-00-00 00:00:00'");
    } else {
        out.push_str(&format!("FROM_UNIXTIME({seconds})"));
    }
}

#[cfg(test)]
mod tests {
    use mysql_async::binlog::value::BinlogValue;
    use mysql_async::Value;

    use super::{push_literal, ColumnKind};

    fn literal(value: Option<Value>, kind: ColumnKind) -> String {
        let value = value.map(BinlogValue::Value);
        let mut out = String::new();
        push_literal(&mut out, value.as_ref(), kind).unwrap();
        out
    }

    #[test]
    fn column_kinds_follow_the_declaration() {
        let cases: &[(&str, &str, ColumnKind)] = &[
            ("int", "int(10) unsigned", ColumnKind::Unsigned(32)),
            ("int", "int(11)", ColumnKind::Plain),
            ("bigint", "bigint(20) unsigned", ColumnKind::Unsigned(64)),
            ("tinyint", "tinyint(3) UNSIGNED", ColumnKind::Unsigned(8)),
            ("mediumint", "mediumint(8) unsigned", ColumnKind::Unsigned(24)),
            ("timestamp", "timestamp", ColumnKind::Timestamp),
            ("set", "set('a','b')", ColumnKind::Set),
            ("enum", "enum('a','b')", ColumnKind::Plain),
            ("double", "double", ColumnKind::Plain),
        ];
        for &(data_type, column_type, expected) in cases {
            assert_eq!(ColumnKind::of(data_type, column_type), expected, "{column_type}");
        }
    }

    #[test]
    fn logged_values_become_the_literals_the_column_means() {
        use ColumnKind::*;
        let cases: &[(Option<Value>, ColumnKind, &str)] = &[
            (None, Plain, "DEFAULT"),
            (Some(Value::NULL), Unsigned(32), "NULL"),
            (Some(Value::Int(-1)), Unsigned(32), "4294967295"),
            (Some(Value::Int(-1)), Unsigned(8), "255"),
            (Some(Value::Int(-1)), Unsigned(64), "18446744073709551615"),
            (Some(Value::Int(-1)), Plain, "-1"),
            (Some(Value::Int(7)), Unsigned(32), "7"),
            (Some(Value::Int(1_700_000_000)), Timestamp, "FROM_UNIXTIME(1700000000)"),
            (
                Some(Value::Bytes(b"1700000000.250000".to_vec())),
                Timestamp,
                "FROM_UNIXTIME(1700000000.250000)",
            ),
            (Some(Value::Bytes(b"0".to_vec())), Timestamp, "'0000-00-00 00:00:00'"),
            (Some(Value::Bytes(vec![0x05, 0x01])), Set, "261"),
            (Some(Value::Double(0.1)), Plain, "1e-1"),
            (Some(Value::Double(1e300)), Plain, "1e300"),
            (Some(Value::Double(-2.5)), Plain, "-2.5e0"),
            (Some(Value::Float(1.5)), Plain, "1.5e0"),
            (
                Some(Value::Bytes(b"it's a \\ line\nnext".to_vec())),
                Plain,
                "'it\\'s a \\\\ line\\nnext'",
            ),
            (Some(Value::Bytes(vec![0xff, 0x00])), Plain, "0xFF00"),
            (
                Some(Value::Date(2026, 12, 2, 18, 0, 5, 0)),
                Plain,
                "'2026-12-02 18:00:05'",
            ),
        ];
        for (value, kind, expected) in cases {
            assert_eq!(literal(value.clone(), *kind), *expected, "{value:?} as {kind:?}");
        }
    }

    #[test]
    fn every_double_reads_back_as_itself() {
        for number in [0.1, 1.0 / 3.0, f64::MAX, f64::MIN_POSITIVE, -123456.789e-200, 0.0] {
            let text = literal(Some(Value::Double(number)), ColumnKind::Plain);
            assert_eq!(text.parse::<f64>().unwrap(), number, "{text}");
        }
    }
}

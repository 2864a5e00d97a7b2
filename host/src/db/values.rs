//! `values.rs` converts between MySQL's values and the WIT `value`
//! variant, in both directions, exactly: unsigned 64-bit stays unsigned,
//! DECIMAL stays decimal text with its scale, TIME stays a signed
//! duration, dates keep their zero parts. Results read over the text
//! protocol (no parameters) and the binary protocol (with parameters) give
//! the same values. It knows nothing of connections.

use mysql_async::Value as My;
use mysql_async::consts::{ColumnFlags, ColumnType as Wire};

use super::bindings::burrow::db::types::{Column, ColumnType, Date, Datetime, Time, Value};

/// MySQL's character-set number for binary strings.
const BINARY_CHARSET: u16 = 63;
/// Largest TIME MySQL accepts: 838:59:59.
const MAX_TIME_HOURS: u16 = 838;

/// What the converter needs to know of one result column.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub kind: ColumnType,
    pub unsigned: bool,
}

/// Describes a result column for the guest and for the converter.
pub fn describe(column: &mysql_async::Column) -> (Column, ColumnInfo) {
    let flags = column.flags();
    let binary = column.character_set() == BINARY_CHARSET;
    let kind = match column.column_type() {
        Wire::MYSQL_TYPE_TINY => ColumnType::Tinyint,
        Wire::MYSQL_TYPE_SHORT => ColumnType::Smallint,
        Wire::MYSQL_TYPE_INT24 => ColumnType::Mediumint,
        Wire::MYSQL_TYPE_LONG => ColumnType::Int,
        Wire::MYSQL_TYPE_LONGLONG => ColumnType::Bigint,
        Wire::MYSQL_TYPE_FLOAT => ColumnType::Float,
        Wire::MYSQL_TYPE_DOUBLE => ColumnType::Double,
        Wire::MYSQL_TYPE_DECIMAL | Wire::MYSQL_TYPE_NEWDECIMAL => ColumnType::Decimal,
        Wire::MYSQL_TYPE_DATE | Wire::MYSQL_TYPE_NEWDATE => ColumnType::Date,
        Wire::MYSQL_TYPE_TIME | Wire::MYSQL_TYPE_TIME2 => ColumnType::Time,
        Wire::MYSQL_TYPE_DATETIME | Wire::MYSQL_TYPE_DATETIME2 => ColumnType::Datetime,
        Wire::MYSQL_TYPE_TIMESTAMP | Wire::MYSQL_TYPE_TIMESTAMP2 => ColumnType::Timestamp,
        Wire::MYSQL_TYPE_YEAR => ColumnType::Year,
        Wire::MYSQL_TYPE_BIT => ColumnType::Bit,
        Wire::MYSQL_TYPE_JSON => ColumnType::Json,
        Wire::MYSQL_TYPE_ENUM => ColumnType::Enum,
        Wire::MYSQL_TYPE_SET => ColumnType::Set,
        Wire::MYSQL_TYPE_GEOMETRY => ColumnType::Geometry,
        Wire::MYSQL_TYPE_NULL => ColumnType::Null,
        Wire::MYSQL_TYPE_STRING if flags.contains(ColumnFlags::ENUM_FLAG) => ColumnType::Enum,
        Wire::MYSQL_TYPE_STRING if flags.contains(ColumnFlags::SET_FLAG) => ColumnType::Set,
        Wire::MYSQL_TYPE_STRING if binary => ColumnType::Binary,
        Wire::MYSQL_TYPE_STRING => ColumnType::Char,
        Wire::MYSQL_TYPE_VAR_STRING | Wire::MYSQL_TYPE_VARCHAR if binary => ColumnType::Varbinary,
        Wire::MYSQL_TYPE_VAR_STRING | Wire::MYSQL_TYPE_VARCHAR => ColumnType::Varchar,
        Wire::MYSQL_TYPE_TINY_BLOB
        | Wire::MYSQL_TYPE_MEDIUM_BLOB
        | Wire::MYSQL_TYPE_LONG_BLOB
        | Wire::MYSQL_TYPE_BLOB
            if binary =>
        {
            ColumnType::Blob
        }
        Wire::MYSQL_TYPE_TINY_BLOB
        | Wire::MYSQL_TYPE_MEDIUM_BLOB
        | Wire::MYSQL_TYPE_LONG_BLOB
        | Wire::MYSQL_TYPE_BLOB => ColumnType::Text,
        _ => ColumnType::Other,
    };
    let unsigned = flags.contains(ColumnFlags::UNSIGNED_FLAG);
    let decimals = match kind {
        ColumnType::Decimal | ColumnType::Time | ColumnType::Datetime | ColumnType::Timestamp => {
            column.decimals()
        }
        _ => 0,
    };
    (
        Column {
            name: column.name_str().into_owned(),
            column_type: kind,
            unsigned,
            nullable: !flags.contains(ColumnFlags::NOT_NULL_FLAG),
            decimals,
        },
        ColumnInfo { kind, unsigned },
    )
}

/// One value from the server, as the guest sees it. An error names what
/// could not be read; it never panics on odd input.
pub fn from_mysql(value: My, column: &ColumnInfo) -> Result<Value, String> {
    use ColumnType as C;
    if let My::NULL = value {
        return Ok(Value::Null);
    }
    Ok(match column.kind {
        // YEAR is reported UNSIGNED but the contract gives it as `int`.
        C::Year => match value {
            My::Int(i) => Value::Int(i),
            My::UInt(u) => {
                Value::Int(i64::try_from(u).map_err(|_| format!("YEAR {u} out of range"))?)
            }
            My::Bytes(b) => Value::Int(parse_text(&b, "year")?),
            other => return Err(unexpected(&other, "year")),
        },
        C::Tinyint | C::Smallint | C::Mediumint | C::Int | C::Bigint => {
            match (value, column.unsigned) {
                (My::Int(i), false) => Value::Int(i),
                (My::UInt(u), true) => Value::Uint(u),
                (My::Int(i), true) => Value::Uint(
                    u64::try_from(i)
                        .map_err(|_| format!("negative value {i} in an unsigned column"))?,
                ),
                (My::UInt(u), false) => Value::Int(
                    i64::try_from(u)
                        .map_err(|_| format!("{u} out of range for a signed column"))?,
                ),
                (My::Bytes(b), false) => Value::Int(parse_text(&b, "integer")?),
                (My::Bytes(b), true) => Value::Uint(parse_text(&b, "unsigned integer")?),
                (other, _) => return Err(unexpected(&other, "integer")),
            }
        }
        C::Float => match value {
            My::Float(f) => Value::Float(f),
            My::Double(d) => Value::Float(d as f32),
            My::Bytes(b) => Value::Float(parse_text(&b, "float")?),
            other => return Err(unexpected(&other, "float")),
        },
        C::Double => match value {
            My::Double(d) => Value::Double(d),
            My::Float(f) => Value::Double(f64::from(f)),
            My::Bytes(b) => Value::Double(parse_text(&b, "double")?),
            other => return Err(unexpected(&other, "double")),
        },
        C::Decimal => Value::Decimal(text(value, "decimal")?),
        C::Date => Value::Date(match value {
            My::Date(y, m, d, ..) => Date {
                year: y,
                month: m,
                day: d,
            },
            My::Bytes(b) => parse_datetime(&utf8(&b)?)?.date,
            other => return Err(unexpected(&other, "date")),
        }),
        C::Datetime | C::Timestamp => {
            let dt = match value {
                My::Date(y, mo, d, h, mi, s, us) => Datetime {
                    date: Date {
                        year: y,
                        month: mo,
                        day: d,
                    },
                    hour: h,
                    minute: mi,
                    second: s,
                    microsecond: us,
                },
                My::Bytes(b) => parse_datetime(&utf8(&b)?)?,
                other => return Err(unexpected(&other, "datetime")),
            };
            if column.kind == C::Timestamp {
                Value::Timestamp(dt)
            } else {
                Value::Datetime(dt)
            }
        }
        C::Time => Value::Time(match value {
            My::Time(negative, days, h, m, s, us) => Time {
                negative,
                // `days` is a u32 off the wire: checked, so a server that
                // sends nonsense gets an error, not a host panic.
                hours: days
                    .checked_mul(24)
                    .and_then(|hours| hours.checked_add(u32::from(h)))
                    .and_then(|hours| u16::try_from(hours).ok())
                    .ok_or_else(|| format!("TIME of {days} days and {h} hours is out of range"))?,
                minutes: m,
                seconds: s,
                microseconds: us,
            },
            My::Bytes(b) => parse_time(&utf8(&b)?)?,
            other => return Err(unexpected(&other, "time")),
        }),
        C::Bit => match value {
            My::Bytes(b) if b.len() <= 8 => {
                Value::Bit(b.iter().fold(0u64, |acc, byte| acc << 8 | u64::from(*byte)))
            }
            My::UInt(u) => Value::Bit(u),
            My::Int(i) => Value::Bit(i as u64),
            other => return Err(unexpected(&other, "bit")),
        },
        C::Json => Value::Json(text(value, "json")?),
        C::Binary | C::Varbinary | C::Blob | C::Geometry => match value {
            My::Bytes(b) => Value::Bytes(b),
            other => return Err(unexpected(&other, "bytes")),
        },
        C::Char | C::Varchar | C::Text | C::Enum | C::Set => Value::Text(text(value, "text")?),
        // A bare NULL column only ever holds NULL (handled above); anything
        // else unknown is passed on as text or bytes, never dropped.
        C::Null | C::Other => match value {
            My::Bytes(b) => match String::from_utf8(b) {
                Ok(s) => Value::Text(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            },
            My::Int(i) => Value::Int(i),
            My::UInt(u) => Value::Uint(u),
            My::Float(f) => Value::Float(f),
            My::Double(d) => Value::Double(d),
            other => return Err(unexpected(&other, "value")),
        },
    })
}

/// One parameter from the guest, checked; an error is a `bad-parameter`
/// message naming what is wrong.
pub fn to_mysql(value: Value) -> Result<My, String> {
    Ok(match value {
        Value::Null => My::NULL,
        Value::Int(i) => My::Int(i),
        Value::Uint(u) => My::UInt(u),
        Value::Float(f) if f.is_finite() => My::Float(f),
        Value::Double(d) if d.is_finite() => My::Double(d),
        Value::Float(_) | Value::Double(_) => {
            return Err("MySQL cannot store NaN or infinity".into());
        }
        Value::Decimal(s) => {
            if !is_decimal(&s) {
                return Err(format!("`{}` is not a decimal number", clip(&s)));
            }
            My::Bytes(s.into_bytes())
        }
        Value::Text(s) | Value::Json(s) => My::Bytes(s.into_bytes()),
        Value::Bytes(b) => My::Bytes(b),
        Value::Date(d) => {
            check_date(&d)?;
            My::Date(d.year, d.month, d.day, 0, 0, 0, 0)
        }
        Value::Datetime(dt) | Value::Timestamp(dt) => {
            check_date(&dt.date)?;
            if dt.hour > 23 || dt.minute > 59 || dt.second > 59 || dt.microsecond > 999_999 {
                return Err(format!(
                    "time of day {:02}:{:02}:{:02}.{:06} is out of range",
                    dt.hour, dt.minute, dt.second, dt.microsecond
                ));
            }
            My::Date(
                dt.date.year,
                dt.date.month,
                dt.date.day,
                dt.hour,
                dt.minute,
                dt.second,
                dt.microsecond,
            )
        }
        Value::Time(t) => {
            if t.hours > MAX_TIME_HOURS
                || t.minutes > 59
                || t.seconds > 59
                || t.microseconds > 999_999
            {
                return Err(format!(
                    "TIME {}{}:{:02}:{:02}.{:06} is out of range (±838:59:59)",
                    if t.negative { "-" } else { "" },
                    t.hours,
                    t.minutes,
                    t.seconds,
                    t.microseconds
                ));
            }
            let days = u32::from(t.hours / 24);
            My::Time(
                t.negative,
                days,
                (t.hours % 24) as u8,
                t.minutes,
                t.seconds,
                t.microseconds,
            )
        }
        Value::Bit(b) => My::UInt(b),
    })
}

fn check_date(d: &Date) -> Result<(), String> {
    // Zero months and days are MySQL's own (`0000-00-00`, `2024-00-15`).
    if d.year > 9999 || d.month > 12 || d.day > 31 {
        return Err(format!(
            "date {:04}-{:02}-{:02} is out of range",
            d.year, d.month, d.day
        ));
    }
    Ok(())
}

/// `[+-]digits[.digits][e[+-]digits]`, as MySQL reads a decimal literal.
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = (!int.is_empty() || !frac.is_empty()) && digits(int) && digits(frac);
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.len() <= 4 && digits(e)
        }
    };
    mantissa_ok && exponent_ok && s.len() <= 200
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

fn unexpected(value: &My, wanted: &str) -> String {
    let kind = match value {
        My::NULL => "NULL",
        My::Bytes(_) => "bytes",
        My::Int(_) => "int",
        My::UInt(_) => "uint",
        My::Float(_) => "float",
        My::Double(_) => "double",
        My::Date(..) => "date",
        My::Time(..) => "time",
    };
    format!("the server sent a {kind} for a {wanted} column")
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "the server sent invalid UTF-8".to_string())
}

/// Text columns: the connection's character set is utf8mb4, so the server
/// converts (e.g. latin1 columns) before sending; anything still invalid is
/// replaced rather than failing the row.
fn text(value: My, wanted: &str) -> Result<String, String> {
    match value {
        My::Bytes(b) => Ok(match String::from_utf8(b) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }),
        My::Int(i) => Ok(i.to_string()),
        My::UInt(u) => Ok(u.to_string()),
        other => Err(unexpected(&other, wanted)),
    }
}

fn parse_text<T: std::str::FromStr>(bytes: &[u8], wanted: &str) -> Result<T, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "`{}` is not a valid {wanted}",
                clip(&String::from_utf8_lossy(bytes))
            )
        })
}

/// `YYYY-MM-DD[ HH:MM:SS[.f…]]`, zero parts allowed.
fn parse_datetime(s: &str) -> Result<Datetime, String> {
    let bad = || format!("`{}` is not a valid date or datetime", clip(s));
    let (date, time) = s.split_once(' ').unwrap_or((s, ""));
    let mut d = date.split('-');
    let year = num(d.next(), 9999).ok_or_else(bad)? as u16;
    let month = num(d.next(), 99).ok_or_else(bad)? as u8;
    let day = num(d.next(), 99).ok_or_else(bad)? as u8;
    if d.next().is_some() {
        return Err(bad());
    }
    let (hour, minute, second, microsecond) = if time.is_empty() {
        (0, 0, 0, 0)
    } else {
        let (h, m, s, us) = parse_clock(time).ok_or_else(bad)?;
        (u8::try_from(h).map_err(|_| bad())?, m, s, us)
    };
    Ok(Datetime {
        date: Date { year, month, day },
        hour,
        minute,
        second,
        microsecond,
    })
}

/// `[-]H…H:MM:SS[.f…]`.
fn parse_time(s: &str) -> Result<Time, String> {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hours, minutes, seconds, microseconds) =
        parse_clock(rest).ok_or_else(|| format!("`{}` is not a valid TIME", clip(s)))?;
    Ok(Time {
        negative,
        hours: u16::try_from(hours).map_err(|_| format!("`{}` is not a valid TIME", clip(s)))?,
        minutes,
        seconds,
        microseconds,
    })
}

fn parse_clock(s: &str) -> Option<(u32, u8, u8, u32)> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = whole.split(':');
    let h = num(parts.next(), 9999)? as u32;
    let m = num(parts.next(), 59)? as u8;
    let sec = num(parts.next(), 59)? as u8;
    if parts.next().is_some() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let us = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    Some((h, m, sec, us))
}

fn num(part: Option<&str>, max: u64) -> Option<u64> {
    let part = part?;
    if part.is_empty() || part.len() > 5 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok().filter(|n| *n <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: ColumnType, unsigned: bool) -> ColumnInfo {
        ColumnInfo { kind, unsigned }
    }

    #[test]
    fn text_and_binary_protocols_agree() {
        let cases: Vec<(ColumnInfo, My, My)> = vec![
            (
                col(ColumnType::Bigint, true),
                My::Bytes(b"18446744073709551615".to_vec()),
                My::UInt(u64::MAX),
            ),
            (
                col(ColumnType::Bigint, false),
                My::Bytes(b"-9223372036854775808".to_vec()),
                My::Int(i64::MIN),
            ),
            (
                col(ColumnType::Double, false),
                My::Bytes(b"2.5".to_vec()),
                My::Double(2.5),
            ),
            (
                col(ColumnType::Date, false),
                My::Bytes(b"0000-00-00".to_vec()),
                My::Date(0, 0, 0, 0, 0, 0, 0),
            ),
            (
                col(ColumnType::Date, false),
                My::Bytes(b"2024-00-15".to_vec()),
                My::Date(2024, 0, 15, 0, 0, 0, 0),
            ),
            (
                col(ColumnType::Datetime, false),
                My::Bytes(b"2024-02-29 23:59:58.000001".to_vec()),
                My::Date(2024, 2, 29, 23, 59, 58, 1),
            ),
            (
                col(ColumnType::Time, false),
                My::Bytes(b"-838:59:59.000000".to_vec()),
                My::Time(true, 34, 22, 59, 59, 0),
            ),
            (
                col(ColumnType::Time, false),
                My::Bytes(b"100:00:00.5".to_vec()),
                My::Time(false, 4, 4, 0, 0, 500_000),
            ),
            (
                col(ColumnType::Year, true),
                My::Bytes(b"2024".to_vec()),
                My::Int(2024),
            ),
        ];
        for (info, text, binary) in cases {
            let a = from_mysql(text, &info).unwrap();
            let b = from_mysql(binary, &info).unwrap();
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }

    #[test]
    fn decimals_keep_their_text_and_bits_their_value() {
        let v = from_mysql(
            My::Bytes(b"1.10".to_vec()),
            &col(ColumnType::Decimal, false),
        )
        .unwrap();
        assert!(matches!(v, Value::Decimal(ref s) if s == "1.10"));
        let v = from_mysql(My::Bytes(vec![0x01, 0x02]), &col(ColumnType::Bit, true)).unwrap();
        assert!(matches!(v, Value::Bit(0x0102)));
        let v = from_mysql(My::Bytes(vec![0xff; 8]), &col(ColumnType::Bit, true)).unwrap();
        assert!(matches!(v, Value::Bit(u64::MAX)));
    }

    #[test]
    fn odd_input_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"x",
            b"2024-13",
            b"99999-01-01",
            b"12:",
            b"1:2:3:4",
            b"-",
            b"1.1234567",
        ] {
            for kind in [
                ColumnType::Int,
                ColumnType::Date,
                ColumnType::Time,
                ColumnType::Datetime,
                ColumnType::Double,
            ] {
                let _ = from_mysql(My::Bytes(bytes.to_vec()), &col(kind, false));
            }
        }
        assert!(from_mysql(My::Int(-1), &col(ColumnType::Int, true)).is_err());
        let huge = My::Time(false, u32::MAX, 23, 0, 0, 0);
        assert!(from_mysql(huge, &col(ColumnType::Time, false)).is_err());
        assert!(from_mysql(My::Bytes(vec![0; 9]), &col(ColumnType::Bit, true)).is_err());
    }

    #[test]
    fn parameters_are_checked() {
        assert!(to_mysql(Value::Decimal("12.50".into())).is_ok());
        assert!(to_mysql(Value::Decimal("-1e10".into())).is_ok());
        assert!(to_mysql(Value::Decimal(".5".into())).is_ok());
        for bad in ["", "1.2.3", "1; DROP TABLE x", "abc", "1e", "--1"] {
            assert!(to_mysql(Value::Decimal(bad.into())).is_err(), "{bad}");
        }
        assert!(to_mysql(Value::Double(f64::NAN)).is_err());
        let month13 = Date {
            year: 2024,
            month: 13,
            day: 1,
        };
        assert!(
            to_mysql(Value::Date(month13))
                .unwrap_err()
                .contains("2024-13-01")
        );
        let t = Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            microseconds: 0,
        };
        assert!(matches!(
            to_mysql(Value::Time(t)).unwrap(),
            My::Time(true, 34, 22, 59, 59, 0)
        ));
        let t = Time {
            negative: false,
            hours: 839,
            minutes: 0,
            seconds: 0,
            microseconds: 0,
        };
        assert!(to_mysql(Value::Time(t)).is_err());
    }
}

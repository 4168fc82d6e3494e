//! Go duration strings (`1h30m`, `1.5s`, `0`) parsed exactly like Go's `time.ParseDuration`, the
//! parser behind the apiserver's CEL `duration()`, so the operator accepts what validation accepts.
//!
//! Not `kube::core::Duration`'s `FromStr`: it panics on values out of range (`9999999999999999h`,
//! `1s-1s`), which a field without a CEL bound (`minInterval`, a webhook `timeout`) lets through
//! and which would take the reconciler down with it. Here such values are errors.

use std::time::Duration;

/// The largest Go duration: `i64::MAX` nanoseconds (about 292 years).
pub const MAX_NANOS: u64 = i64::MAX as u64;

/// Why a text is not a usable duration. Messages quote at most a short unit, never the whole text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("is not a duration: empty")]
    Empty,
    #[error("is not a duration: expected a number before each unit")]
    InvalidNumber,
    #[error("is not a duration: missing a unit (ns, us, µs, ms, s, m or h)")]
    MissingUnit,
    #[error("is not a duration: unknown unit {0:?} (ns, us, µs, ms, s, m or h)")]
    UnknownUnit(String),
    #[error("is not a duration: out of range (at most 2562047h47m16.854775807s)")]
    OutOfRange,
    #[error("is negative")]
    Negative,
}

/// A parsed duration with Go's sign (`-0s` is zero, not negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoDuration {
    pub negative: bool,
    pub magnitude: Duration,
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 micro sign and U+03BC Greek mu, as Go accepts both.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Leading decimal digits as an integer; `None` past 2^63 (Go's `leadingInt`).
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut x: u64 = 0;
    for b in s[..end].bytes() {
        x = x.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if x > 1 << 63 {
            return None;
        }
    }
    Some((x, &s[end..]))
}

/// Leading fraction digits, value and scale; digits past u64 precision are dropped, as in Go.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (mut x, mut scale, mut overflow) = (0u64, 1.0f64, false);
    for b in s[..end].bytes() {
        if overflow {
            continue;
        }
        match x
            .checked_mul(10)
            .and_then(|y| y.checked_add(u64::from(b - b'0')))
        {
            Some(y) if y <= 1 << 63 => {
                x = y;
                scale *= 10.0;
            }
            _ => overflow = true,
        }
    }
    (x, scale, &s[end..])
}

/// Parses a Go duration, keeping its sign.
pub fn parse(text: &str) -> Result<GoDuration, DurationError> {
    let mut s = text;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(GoDuration {
            negative: false,
            magnitude: Duration::ZERO,
        });
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(DurationError::InvalidNumber);
        }
        let before = s.len();
        let (whole, rest) = leading_int(s).ok_or(DurationError::OutOfRange)?;
        let has_whole = rest.len() != before;
        s = rest;
        let (mut frac, mut scale, mut has_frac) = (0, 1.0, false);
        if let Some(rest) = s.strip_prefix('.') {
            let before = rest.len();
            (frac, scale, s) = leading_fraction(rest);
            has_frac = s.len() != before;
        }
        if !has_whole && !has_frac {
            return Err(DurationError::InvalidNumber);
        }
        let unit_end = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_end == 0 {
            return Err(DurationError::MissingUnit);
        }
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let per_unit = unit_nanos(unit)
            .ok_or_else(|| DurationError::UnknownUnit(unit.chars().take(8).collect()))?;
        let mut value = whole
            .checked_mul(per_unit)
            .filter(|v| *v <= 1 << 63)
            .ok_or(DurationError::OutOfRange)?;
        if frac > 0 {
            // Float arithmetic exactly as Go does it, so fractions round the same way.
            value = value
                .checked_add((frac as f64 * (per_unit as f64 / scale)) as u64)
                .filter(|v| *v <= 1 << 63)
                .ok_or(DurationError::OutOfRange)?;
        }
        total = total
            .checked_add(value)
            .filter(|v| *v <= 1 << 63)
            .ok_or(DurationError::OutOfRange)?;
    }
    // 2^63 is representable only as a negative Go duration.
    if total > MAX_NANOS + u64::from(negative) {
        return Err(DurationError::OutOfRange);
    }
    Ok(GoDuration {
        negative: negative && total > 0,
        magnitude: Duration::from_nanos(total),
    })
}

/// Parses a Go duration that must not be negative.
pub fn parse_non_negative(text: &str) -> Result<Duration, DurationError> {
    let parsed = parse(text)?;
    if parsed.negative {
        return Err(DurationError::Negative);
    }
    Ok(parsed.magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        parse_non_negative(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn go_examples_parse_like_go() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("2h45m0.5s"), Duration::from_millis(9_900_500));
        assert_eq!(ok("1µs1μs1us"), Duration::from_micros(3));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("5.s"), Duration::from_secs(5));
        assert_eq!(ok("+10s"), Duration::from_secs(10));
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("-0s"), Duration::ZERO);
        assert_eq!(
            ok("2562047h47m16.854775807s"),
            Duration::from_nanos(MAX_NANOS)
        );
        assert_eq!(
            parse("-2562047h47m16.854775808s").unwrap(),
            GoDuration {
                negative: true,
                magnitude: Duration::from_nanos(MAX_NANOS + 1)
            }
        );
    }

    #[test]
    fn bad_texts_are_errors_not_panics() {
        for (text, error) in [
            ("", DurationError::Empty),
            ("-", DurationError::Empty),
            ("s", DurationError::InvalidNumber),
            (".s", DurationError::InvalidNumber),
            ("1", DurationError::MissingUnit),
            ("1h2", DurationError::MissingUnit),
            ("00", DurationError::MissingUnit),
            ("1d", DurationError::UnknownUnit("d".into())),
            ("1 s", DurationError::UnknownUnit(" s".into())),
            ("1s-1s", DurationError::UnknownUnit("s-".into())),
            ("9999999999999999h", DurationError::OutOfRange),
            ("2562047h47m16.854775808s", DurationError::OutOfRange),
            ("99999999999999999999s", DurationError::OutOfRange),
            ("1e9h", DurationError::UnknownUnit("e".into())),
            ("-1s", DurationError::Negative),
        ] {
            assert_eq!(parse_non_negative(text), Err(error), "{text:?}");
        }
    }
}

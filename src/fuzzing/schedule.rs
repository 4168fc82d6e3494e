//! Target `schedule`: duration and cron parsing — `refreshInterval`, `rotation.interval`,
//! `rotation.minInterval` (Go durations, `crd::duration`) and `rotation.schedule` (cron).
//!
//! Flags: the low 5 bits and field 1 make the reference time. Fields: text, second text.
//!
//! Properties: parsing never panics; a parsed duration survives a format/parse round trip; two
//! durations written one after the other parse to their sum (or to out-of-range, exactly when the
//! sum is too large); the next refresh, interval and cron times lie after the reference time.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{split, text};
use crate::controller::schedule::{next_refresh, refresh_interval};
use crate::crd::duration::{self, DurationError, MAX_NANOS};
use crate::crd::rotation::RotationSpec;
use crate::rotation::schedule::{earliest_allowed, min_interval, next_scheduled};

/// The fuzz target.
pub fn schedule(data: &[u8]) {
    let (flags, fields) = split(data, 2);
    let first = text(fields[0]);
    let second = text(fields[1]);
    let since = reference_time(flags, fields[1]);
    durations(&first, &second, since);
    rotation(&first, since);
}

/// A time between 1970 and about 2100, so that `since + interval` stays representable.
fn reference_time(flags: u8, bytes: &[u8]) -> Timestamp {
    let seed = bytes.iter().fold(u64::from(flags), |n, b| {
        n.wrapping_mul(131).wrapping_add(u64::from(*b))
    });
    Timestamp::from_second((seed % 4_102_444_800) as i64).expect("in range")
}

/// Go's own format (`1h2m3.5s`) of a non-negative duration.
fn go_format(d: Duration) -> String {
    let nanos = d.as_nanos();
    let (hours, rest) = (nanos / 3_600_000_000_000, nanos % 3_600_000_000_000);
    let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let (seconds, fraction) = (rest / 1_000_000_000, rest % 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}.{fraction:09}s"));
    out
}

fn durations(first: &str, second: &str, since: Timestamp) {
    let parsed = duration::parse(first);
    if let Ok(d) = parsed {
        assert!(d.magnitude.as_nanos() <= u128::from(MAX_NANOS) + u128::from(d.negative));
        if !d.negative {
            let again = duration::parse_non_negative(&go_format(d.magnitude));
            assert_eq!(again, Ok(d.magnitude), "format/parse round trip");
        }
    }
    // Concatenating two unsigned durations adds them (both end in a unit, so the terms split
    // where they did before).
    let unsigned = |s: &str| !s.starts_with(['-', '+']) && s != "0";
    if let (Ok(a), Ok(b)) = (
        duration::parse_non_negative(first),
        duration::parse_non_negative(second),
    ) && unsigned(first)
        && unsigned(second)
    {
        let joined = duration::parse_non_negative(&format!("{first}{second}"));
        let sum = a.as_nanos() + b.as_nanos();
        if sum <= u128::from(MAX_NANOS) {
            assert_eq!(joined, Ok(a + b), "concatenation adds");
        } else {
            assert_eq!(joined, Err(DurationError::OutOfRange), "sum out of range");
        }
    }
    match refresh_interval(Some(first)) {
        Ok(Some(interval)) => {
            assert!(!interval.is_zero());
            assert_eq!(parsed.map(|d| d.magnitude), Ok(interval));
            let next = next_refresh(first, since, interval);
            assert!(next > since, "the next refresh is in the future");
        }
        Ok(None) => assert_eq!(parsed.map(|d| d.magnitude), Ok(Duration::ZERO)),
        Err(message) => assert!(message.starts_with("refreshInterval ")),
    }
}

fn rotation(text: &str, since: Timestamp) {
    let spec = |field: &str| -> RotationSpec {
        serde_json::from_value(serde_json::json!({ field: text })).expect("a rotation spec")
    };
    let interval = spec("interval");
    if let Ok(next) = next_scheduled(&interval, since) {
        let every = duration::parse_non_negative(text).expect("the same parser");
        let every = SignedDuration::try_from(every).expect("fits");
        assert_eq!(next, since.checked_add(every).expect("was added once"));
    }
    let cron = spec("schedule");
    if let Ok(next) = next_scheduled(&cron, since) {
        assert!(
            next > since,
            "the next cron time is after the reference time"
        );
    }
    let min = spec("minInterval");
    if let (Ok(gap), Ok(Some(earliest))) = (min_interval(&min), earliest_allowed(&min, Some(since)))
    {
        let gap = SignedDuration::try_from(gap).expect("fits");
        assert_eq!(Some(earliest), since.checked_add(gap).ok());
    }
}

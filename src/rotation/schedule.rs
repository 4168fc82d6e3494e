//! When the next rotation is due: `interval` after the last one (or after creation), or the next
//! cron `schedule` time; never sooner than `minInterval` after the last rotation, whatever
//! triggers it. Derived only from persisted times, so an operator restart triggers nothing.

use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;

use crate::crd::rotation::RotationSpec;

/// Default minimum time between two rotations.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(600);

fn duration(text: &str, field: &str) -> Result<Duration, String> {
    crate::crd::duration::parse_non_negative(text)
        .map_err(|e| format!("rotation.{field} {text:?} {e}"))
}

/// The minimum gap between rotations.
pub fn min_interval(spec: &RotationSpec) -> Result<Duration, String> {
    spec.min_interval
        .as_deref()
        .map_or(Ok(DEFAULT_MIN_INTERVAL), |t| duration(t, "minInterval"))
}

/// The next scheduled rotation after `since` (the last rotation, or the resource's creation).
pub fn next_scheduled(spec: &RotationSpec, since: Timestamp) -> Result<Timestamp, String> {
    if let Some(interval) = &spec.interval {
        let every = duration(interval, "interval")?;
        let every = jiff::SignedDuration::try_from(every).map_err(|e| e.to_string())?;
        return since.checked_add(every).map_err(|e| e.to_string());
    }
    let Some(schedule) = &spec.schedule else {
        return Err("rotation needs an interval or a schedule".into());
    };
    let cron = croner::Cron::from_str(schedule)
        .map_err(|e| format!("rotation.schedule {schedule:?}: {e}"))?;
    let zoned = since.to_zoned(jiff::tz::TimeZone::UTC);
    let next = cron
        .find_next_occurrence(&zoned, false)
        .map_err(|e| format!("rotation.schedule {schedule:?}: {e}"))?;
    Ok(next.timestamp())
}

/// Earliest time a rotation may start, from the last one and `minInterval`.
pub fn earliest_allowed(
    spec: &RotationSpec,
    last_rotation: Option<Timestamp>,
) -> Result<Option<Timestamp>, String> {
    let Some(last) = last_rotation else {
        return Ok(None);
    };
    let gap = jiff::SignedDuration::try_from(min_interval(spec)?).map_err(|e| e.to_string())?;
    last.checked_add(gap).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> RotationSpec {
        serde_json::from_value(json).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn interval_counts_from_the_last_rotation() {
        let s = spec(serde_json::json!({"interval": "720h"}));
        assert_eq!(
            next_scheduled(&s, at("2026-01-01T00:00:00Z")).unwrap(),
            at("2026-01-31T00:00:00Z")
        );
    }

    #[test]
    fn cron_schedule_finds_the_next_slot_in_utc() {
        let s = spec(serde_json::json!({"schedule": "0 3 * * 0"}));
        // 2026-11-22 is a Sunday.
        assert_eq!(
            next_scheduled(&s, at("2026-11-22T02:00:00Z")).unwrap(),
            at("2026-11-22T03:00:00Z")
        );
        assert_eq!(
            next_scheduled(&s, at("2026-11-22T03:00:00Z")).unwrap(),
            at("2026-11-29T03:00:00Z")
        );
        assert!(
            next_scheduled(
                &spec(serde_json::json!({"schedule": "61 * * * *"})),
                at("2026-11-22T00:00:00Z")
            )
            .is_err()
        );
    }

    #[test]
    fn min_interval_defaults_to_ten_minutes() {
        let s = spec(serde_json::json!({"interval": "24h"}));
        assert_eq!(earliest_allowed(&s, None).unwrap(), None);
        assert_eq!(
            earliest_allowed(&s, Some(at("2026-01-01T00:00:00Z"))).unwrap(),
            Some(at("2026-01-01T00:10:00Z"))
        );
        let custom = spec(serde_json::json!({"interval": "24h", "minInterval": "1h"}));
        assert_eq!(
            earliest_allowed(&custom, Some(at("2026-01-01T00:00:00Z"))).unwrap(),
            Some(at("2026-01-01T01:00:00Z"))
        );
    }
}

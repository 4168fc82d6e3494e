//! Pure timing decisions: when a ManagedSecret is refreshed next and how long a failing one backs
//! off. Phases and jitter derive from stable keys, so a restart reproduces the same spread instead
//! of every object firing at once.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

/// Refresh interval when the spec says nothing.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// Parses `refreshInterval` (Go duration). `Ok(None)` means periodic refresh is off (`0`).
pub fn refresh_interval(spec_value: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(text) = spec_value else {
        return Ok(Some(DEFAULT_REFRESH));
    };
    let duration = crate::crd::duration::parse_non_negative(text)
        .map_err(|e| format!("refreshInterval {text:?} {e}"))?;
    Ok((!duration.is_zero()).then_some(duration))
}

/// A stable number in `[0, 1)` from the object's UID and a salt.
fn unit_fraction(uid: &str, salt: &str) -> f64 {
    let digest = Sha256::digest(format!("{salt}\0{uid}").as_bytes());
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(eight) >> 11) as f64 / (1u64 << 53) as f64
}

/// The next periodic refresh after a sync at `last_sync`. Refreshes sit on a grid
/// (`phase + k·interval`) whose phase comes from `phase_key`; the controller passes the store and
/// KMS secret name, so readers of one secret refresh together (and share one read) while distinct
/// secrets spread evenly over the interval. The first grid point is at least half an interval
/// after `last_sync`, so a fresh sync is never followed at once.
pub fn next_refresh(phase_key: &str, last_sync: Timestamp, interval: Duration) -> Timestamp {
    let interval_ns = interval.as_nanos().max(1) as i128;
    let phase_ns = (unit_fraction(phase_key, "refresh") * interval_ns as f64) as i128;
    let earliest = last_sync.as_nanosecond() + interval_ns / 2;
    let steps = (earliest - phase_ns).div_euclid(interval_ns) + 1;
    let next = phase_ns + steps * interval_ns;
    Timestamp::from_nanosecond(next).unwrap_or(Timestamp::MAX)
}

/// Time from `now` until `at`, zero when already due.
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    let delta: SignedDuration = at.duration_since(now);
    Duration::try_from(delta).unwrap_or(Duration::ZERO)
}

/// Per-object exponential backoff: `base·2^(failures-1)` capped at `max`, with ±20 % jitter
/// fixed by UID and attempt so retries of many objects do not align.
pub fn backoff(uid: &str, failures: u32, base: Duration, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let raw = base.saturating_mul(1u32 << exponent).min(max);
    let jitter = 0.8 + 0.4 * unit_fraction(uid, &format!("backoff-{failures}"));
    raw.mul_f64(jitter).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn refresh_interval_defaults_parses_and_disables() {
        assert_eq!(refresh_interval(None), Ok(Some(DEFAULT_REFRESH)));
        assert_eq!(
            refresh_interval(Some("1h30m")),
            Ok(Some(Duration::from_secs(5400)))
        );
        assert_eq!(refresh_interval(Some("0")), Ok(None));
        assert_eq!(refresh_interval(Some("0s")), Ok(None));
        assert!(refresh_interval(Some("soon")).is_err());
    }

    #[test]
    fn next_refresh_is_between_half_and_one_and_a_half_intervals_then_exact() {
        let interval = Duration::from_secs(600);
        for uid in ["a", "b", "c", "0b7c-uid", "zzz"] {
            let first = next_refresh(uid, at(1_000_000), interval);
            let gap = first.as_second() - 1_000_000;
            assert!((300..=900).contains(&gap), "{uid}: {gap}");
            let second = next_refresh(uid, first, interval);
            assert_eq!(second.as_second() - first.as_second(), 600, "{uid}");
        }
    }

    #[test]
    fn next_refresh_is_the_same_after_a_restart() {
        let interval = Duration::from_secs(3600);
        let a = next_refresh("uid-1", at(5_000), interval);
        assert_eq!(next_refresh("uid-1", at(5_000), interval), a);
        // A sync slightly later (say, after a restart) lands on the same grid point.
        assert_eq!(
            next_refresh("uid-1", at(5_010), interval).as_second() % 3600,
            a.as_second() % 3600
        );
    }

    #[test]
    fn phases_spread_evenly_over_the_interval() {
        let interval = Duration::from_secs(100);
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            let t = next_refresh(&format!("uid-{i}"), at(0), interval);
            buckets[((t.as_second() % 100) / 10) as usize] += 1;
        }
        let (min, max) = (
            *buckets.iter().min().unwrap(),
            *buckets.iter().max().unwrap(),
        );
        assert!(max as f64 <= 1.15 * min as f64, "uneven spread {buckets:?}");
    }

    #[test]
    fn backoff_grows_caps_and_jitters_deterministically() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(300));
        let first = backoff("u", 1, base, max);
        assert!((4.0..=6.0).contains(&first.as_secs_f64()), "{first:?}");
        let fourth = backoff("u", 4, base, max);
        assert!((32.0..=48.0).contains(&fourth.as_secs_f64()), "{fourth:?}");
        assert!(backoff("u", 40, base, max) <= max);
        assert_eq!(backoff("u", 3, base, max), backoff("u", 3, base, max));
        assert_ne!(backoff("u", 3, base, max), backoff("v", 3, base, max));
    }

    #[test]
    fn until_is_zero_when_due() {
        assert_eq!(until(at(10), at(5)), Duration::ZERO);
        assert_eq!(until(at(10), at(70)), Duration::from_secs(60));
    }
}

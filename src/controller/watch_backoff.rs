//! Backoff of the operator's watches after errors: each watch on its own, capped at a few
//! seconds. kube-runtime's default grows to 30 s and a controller's watches share it, so after an
//! apiserver restart (every watch fails, then each gets `410 Gone` once) the operator stayed deaf
//! for a minute once the apiserver answered again (measured by the fault episodes).

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// First delay after an error, and the cap.
const FIRST: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(5);

/// Doubling from [`FIRST`] up to [`MAX`], ±20 % jitter so replicas and watches spread out;
/// reset by the first event after an error.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

/// A fresh backoff for one watch (or one controller's triggers).
pub fn watch_backoff() -> WatchBackoff {
    WatchBackoff { next: FIRST }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        Some(delay.mul_f64(jitter).min(MAX))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// For a controller whose input streams back off on their own: adds no pause of its own.
#[derive(Debug, Clone, Copy)]
pub struct NoBackoff;

impl Iterator for NoBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for NoBackoff {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_a_few_seconds_never_more_and_resets() {
        let mut backoff = watch_backoff();
        let delays: Vec<Duration> = (&mut backoff).take(12).collect();
        assert!(delays[0] >= FIRST.mul_f64(0.8) && delays[0] <= FIRST.mul_f64(1.2));
        assert!(delays[3] > delays[0], "{delays:?}");
        assert!(delays.iter().all(|d| *d <= MAX), "{delays:?}");
        assert!(delays[11] >= MAX.mul_f64(0.8), "{delays:?}");
        backoff.reset();
        assert!(backoff.next().unwrap() <= FIRST.mul_f64(1.2));
    }
}

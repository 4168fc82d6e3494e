//! Client-side rate limit toward KMS per store (`spec.rateLimit`): a token bucket that makes
//! callers wait for a token instead of letting KMS throttle them.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// `qps` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    pub fn new(qps: u32, burst: u32) -> Self {
        let qps = f64::from(qps.max(1));
        let burst = f64::from(burst.max(1)).max(qps.min(1.0));
        Self {
            qps,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                updated: Instant::now(),
            }),
        }
    }

    /// Takes one token, waiting until one is available. Waiters are served in turn because the
    /// lock is held while sleeping.
    pub async fn acquire(&self) {
        let mut bucket = self.bucket.lock().await;
        let now = Instant::now();
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.qps;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / self.qps);
            tokio::time::sleep(wait).await;
            bucket.tokens = 1.0;
            bucket.updated = Instant::now();
        }
        bucket.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_passes_at_once_then_calls_are_spaced_by_qps() {
        let limiter = RateLimiter::new(10, 5);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..10 {
            limiter.acquire().await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (0.99..=1.01).contains(&elapsed),
            "ten more calls at 10 qps take one second: {elapsed}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_up_to_burst_only() {
        let limiter = RateLimiter::new(2, 2);
        limiter.acquire().await;
        limiter.acquire().await;
        tokio::time::advance(Duration::from_secs(60)).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire().await;
        assert!(
            start.elapsed() >= Duration::from_millis(499),
            "{:?}",
            start.elapsed()
        );
    }
}

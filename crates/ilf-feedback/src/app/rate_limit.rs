//! A token bucket per annotator for the run-tests action: each run executes untrusted code, so
//! one annotator (or a stolen session) cannot keep the sandbox pool busy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `burst` runs at once, then one more every `refill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub refill: Duration,
}

impl Default for RateLimit {
    /// Ten runs at once, then one every three seconds: far above a person's pace of editing.
    fn default() -> Self {
        RateLimit {
            burst: 10,
            refill: Duration::from_secs(3),
        }
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at time `now`; `Err(wait)` says how long until the next one.
    pub fn take_at(&self, key: i64, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let burst = f64::from(self.limit.burst);
        let refill = self.limit.refill.as_secs_f64().max(f64::MIN_POSITIVE);
        let (tokens, last) = buckets.entry(key).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed / refill).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) * refill))
        }
    }

    pub fn take(&self, key: i64) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 2,
            refill: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert!(limiter.take_at(1, t0).is_ok());
        assert!(limiter.take_at(1, t0).is_ok());
        let wait = limiter.take_at(1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        // Another annotator has a bucket of their own.
        assert!(limiter.take_at(2, t0).is_ok());
        assert!(limiter.take_at(1, t0 + Duration::from_secs(5)).is_err());
        assert!(limiter.take_at(1, t0 + Duration::from_secs(11)).is_ok());
    }
}

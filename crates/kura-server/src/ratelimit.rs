//! Sign-in rate limiting: at most `max_failures` failed attempts per account name and per
//! client address (`client_addr.rs`: behind a trusted proxy, the forwarded one) in a sliding
//! window. Counted in memory; a multi-node deployment limits per node (a later issue moves it to
//! the shared store).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct SigninLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SigninLimiter {
    pub fn new(max_failures: u32, window: Duration) -> SigninLimiter {
        SigninLimiter {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Err(seconds until the oldest failure leaves the window) when any key is at its limit.
    pub fn check(&self, keys: &[&str], now: Instant) -> Result<(), u64> {
        let mut map = self.map();
        let mut wait = 0u64;
        for key in keys {
            if let Some(times) = map.get_mut(*key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    times.pop_front();
                }
                if times.len() >= self.max_failures as usize {
                    if let Some(oldest) = times.front() {
                        let left = self.window.saturating_sub(now.duration_since(*oldest));
                        wait = wait.max(left.as_secs().max(1));
                    }
                }
            }
        }
        if wait > 0 {
            Err(wait)
        } else {
            Ok(())
        }
    }

    pub fn failed(&self, keys: &[&str], now: Instant) {
        let mut map = self.map();
        // Bounded memory under a spray of random names: forget everything when huge.
        if map.len() > 100_000 {
            map.clear();
        }
        for key in keys {
            map.entry((*key).to_string()).or_default().push_back(now);
        }
    }

    pub fn succeeded(&self, key: &str) {
        self.map().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_releases_after_the_window() {
        let l = SigninLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(&["user:a", "ip:1"], t0).is_ok());
            l.failed(&["user:a", "ip:1"], t0);
        }
        let wait = l.check(&["user:a"], t0).unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        assert!(
            l.check(&["user:b"], t0).is_ok(),
            "other names are not blocked"
        );
        assert!(
            l.check(&["user:b", "ip:1"], t0).is_err(),
            "the address is blocked"
        );
        assert!(l.check(&["user:a"], t0 + Duration::from_secs(61)).is_ok());
    }
}

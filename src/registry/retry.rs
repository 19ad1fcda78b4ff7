//! When to try a request again, and how long to wait first.
//!
//! [`RetryPolicy::wait`] is pure: the executor asks it after each failed
//! attempt of a request. The waits grow exponentially from `--retry-delay`, are
//! jittered (so parallel jobs hitting one registry do not retry in lockstep),
//! are capped, and give way to the registry's own `Retry-After` when it says
//! one. [`HostPace`] remembers the wait per registry host for the run: a 429
//! with `Retry-After` on one request holds back every request to that host
//! until then, not just the one that got it.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How often and how patiently to retry one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`--retry-times`); 0 turns retries off.
    pub times: u32,
    /// The first wait (`--retry-delay`); each later one doubles it.
    pub delay: Duration,
    /// No single wait is longer than this, whatever `Retry-After` says.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five retries from 0.5 s: about 15 s of waiting in all before giving up,
    /// enough for a registry's brief bad patch, short enough for a CI job.
    fn default() -> RetryPolicy {
        RetryPolicy {
            times: 5,
            delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry), or `None`
    /// when the retries are spent. `retry_after` is the registry's own answer;
    /// `jitter` is a number in `[0, 1)` (random in use, fixed in tests).
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
        if retry == 0 || retry > self.times {
            return None;
        }
        let base = self.delay.saturating_mul(1u32 << (retry - 1).min(16));
        // Full jitter over the upper half: never less than half the backoff.
        let backoff = base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        Some(retry_after.unwrap_or(backoff).min(self.max_delay))
    }
}

/// The earliest moment the next request to one registry host may go: pushed
/// back by each transient failure there (by that request's backoff, or the
/// registry's `Retry-After`), never forward.
#[derive(Debug)]
pub struct HostPace {
    not_before: Mutex<Option<Instant>>,
}

impl Default for HostPace {
    fn default() -> HostPace {
        HostPace {
            not_before: Mutex::new(None),
        }
    }
}

impl HostPace {
    /// How long a request made `now` must wait first.
    pub fn delay(&self, now: Instant) -> Duration {
        self.not_before
            .lock()
            .expect("host pace")
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    /// Holds requests back until `wait` after `now` (unless they are held
    /// longer already).
    pub fn hold(&self, now: Instant, wait: Duration) {
        let until = now.checked_add(wait).unwrap_or(now);
        let mut nb = self.not_before.lock().expect("host pace");
        if nb.is_none_or(|t| t < until) {
            *nb = Some(until);
        }
    }
}

/// Parses `Retry-After`: delay-seconds, or an HTTP-date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses a duration flag: `500ms`, `2s`, `1m`, or plain seconds (`3`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_and_stop_after_the_retries() {
        let p = RetryPolicy {
            times: 3,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.wait(1, None, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(p.wait(2, None, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(p.wait(3, None, 0.0), Some(Duration::from_millis(200)));
        assert_eq!(p.wait(4, None, 0.5), None);
        assert_eq!(p.wait(0, None, 0.5), None);
        let off = RetryPolicy { times: 0, ..p };
        assert_eq!(off.wait(1, None, 0.5), None);
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(7)), 0.3),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(3600)), 0.3),
            Some(p.max_delay)
        );
    }

    #[test]
    fn a_host_is_held_back_to_the_latest_wait_asked() {
        let pace = HostPace::default();
        let t0 = Instant::now();
        assert_eq!(pace.delay(t0), Duration::ZERO);
        pace.hold(t0, Duration::from_secs(2));
        pace.hold(t0, Duration::from_secs(1));
        assert_eq!(
            pace.delay(t0),
            Duration::from_secs(2),
            "never moved forward"
        );
        assert_eq!(
            pace.delay(t0 + Duration::from_millis(1500)),
            Duration::from_millis(500)
        );
        assert_eq!(pace.delay(t0 + Duration::from_secs(3)), Duration::ZERO);
        pace.hold(t0, Duration::MAX);
        assert!(pace.delay(t0) > Duration::ZERO, "no overflow, still held");
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Mon, 30 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Mon, 30 Nov 2026 10:00:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Mon, 30 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn durations_parse_like_skopeo_flags() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}

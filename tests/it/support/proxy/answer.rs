//! Writing answers to the client: the sinks a body goes through, bandwidth pacing
//! (per connection and shared), and the answers the proxy makes itself.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use super::*;

/// Where a body goes, piece by piece; `last` marks the piece that completes the message.
/// `Ok(false)` means: stop here (the answer is cut).
pub(super) trait Sink {
    async fn put(&mut self, bytes: &[u8], last: bool) -> io::Result<bool>;
}

impl Sink for OwnedWriteHalf {
    async fn put(&mut self, bytes: &[u8], _last: bool) -> io::Result<bool> {
        self.write_all(bytes).await?;
        Ok(true)
    }
}

/// Drops what it is given (a request body the proxy answers itself).
pub(super) struct Discard;

impl Sink for Discard {
    async fn put(&mut self, _bytes: &[u8], _last: bool) -> io::Result<bool> {
        Ok(true)
    }
}

/// The client side of an answer, applying [`Action::CutAnswer`] and [`Action::Trickle`].
pub(super) struct AnswerWriter<'a> {
    pub(super) w: &'a mut OwnedWriteHalf,
    /// Bytes still allowed through when the answer is to be cut.
    pub(super) budget: Option<usize>,
    /// Body bytes per second when trickling.
    pub(super) trickle: Option<u64>,
    /// The bandwidth limits bodies go through.
    pub(super) link: Link<'a>,
    /// The head is sent (trickling applies to the body only).
    pub(super) in_body: bool,
}

impl Sink for AnswerWriter<'_> {
    async fn put(&mut self, bytes: &[u8], last: bool) -> io::Result<bool> {
        let (send, cut) = match self.budget {
            // The last byte of the answer is always withheld: a cut answer is never whole.
            Some(budget) if budget < bytes.len() || last => {
                (&bytes[..budget.min(bytes.len().saturating_sub(1))], true)
            }
            _ => (bytes, false),
        };
        if let Some(budget) = &mut self.budget {
            *budget -= send.len();
        }
        match self.trickle {
            Some(rate) if self.in_body => trickle(self.w, send, rate).await?,
            _ if self.in_body => self.link.send(self.w, send).await?,
            _ => self.w.write_all(send).await?,
        }
        Ok(!cut)
    }
}

/// A bandwidth limit: each piece of `n` bytes sent through it takes the next `n / rate`
/// seconds of a timeline kept by the pacer, and its sender waits for that span's end
/// before sending it. Whoever shares the pacer shares the rate, piece by piece in the
/// order they ask (the pieces are small: what one read of a body gives).
pub(super) struct Pacer {
    pub(super) rate: u64,
    /// Where the timeline's free part starts; `None` before the first piece.
    pub(super) free_at: Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    pub(super) fn new(rate: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            free_at: Mutex::new(None),
        }
    }

    /// When a piece of `n` bytes asked for now may go.
    pub(super) fn reserve(&self, n: usize) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let mut free_at = self.free_at.lock().unwrap();
        // A flow that fell behind (a late wake-up, an idle moment) catches up by at most
        // PACE_CREDIT, so over any span it never gets much more than its rate.
        let start = match *free_at {
            Some(free) => free.max(now.checked_sub(PACE_CREDIT).unwrap_or(now)),
            None => now,
        };
        let end = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
        *free_at = Some(end);
        end
    }
}

/// The pacers one direction of one connection goes through: its own and the shared one.
#[derive(Clone, Copy)]
pub(super) struct Link<'a>(pub(super) [Option<&'a Pacer>; 2]);

impl Link<'_> {
    /// Writes `bytes` once every pacer lets them go (at once without limits).
    pub(super) async fn send(&self, w: &mut OwnedWriteHalf, bytes: &[u8]) -> io::Result<()> {
        if !bytes.is_empty() {
            let due = self
                .0
                .iter()
                .flatten()
                .map(|p| p.reserve(bytes.len()))
                .max();
            if let Some(due) = due
                && due > tokio::time::Instant::now()
            {
                tokio::time::sleep_until(due).await;
            }
        }
        w.write_all(bytes).await
    }
}

/// The registry side of a request body, sent through the connection's link.
pub(super) struct Paced<'a, 'w> {
    pub(super) sink: &'w mut OwnedWriteHalf,
    pub(super) link: Link<'a>,
}

impl Sink for Paced<'_, '_> {
    async fn put(&mut self, bytes: &[u8], _last: bool) -> io::Result<bool> {
        self.link.send(self.sink, bytes).await?;
        Ok(true)
    }
}

/// Writes `bytes` at `rate` bytes a second, a piece every [`TRICKLE_TICK`].
pub(super) async fn trickle(w: &mut OwnedWriteHalf, bytes: &[u8], rate: u64) -> io::Result<()> {
    let piece = (rate * TRICKLE_TICK.as_millis() as u64 / 1000).max(1) as usize;
    for chunk in bytes.chunks(piece) {
        w.write_all(chunk).await?;
        w.flush().await?;
        tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64)).await;
    }
    Ok(())
}

/// An answer of the proxy's own, in the registry's JSON error format.
pub(super) fn status_answer(code: u16, retry_after: Option<&RetryAfter>, close: bool) -> Vec<u8> {
    let (reason, error_code) = match code {
        413 => ("Request Entity Too Large", "SIZE_INVALID"),
        429 => ("Too Many Requests", "TOOMANYREQUESTS"),
        502 => ("Bad Gateway", "UNAVAILABLE"),
        503 => ("Service Unavailable", "UNAVAILABLE"),
        500 => ("Internal Server Error", "UNKNOWN"),
        _ => ("Injected Fault", "UNKNOWN"),
    };
    let body = format!(
        r#"{{"errors":[{{"code":"{error_code}","message":"pushgate test proxy: injected {code}"}}]}}"#
    );
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\n",
        body.len()
    );
    match retry_after {
        Some(RetryAfter::Seconds(seconds)) => head.push_str(&format!("Retry-After: {seconds}\r\n")),
        Some(RetryAfter::Date(date)) => {
            head.push_str(&format!("Retry-After: {}\r\n", http_date(*date)))
        }
        None => {}
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head.push_str(&body);
    head.into_bytes()
}

/// The length of the head of a serialised message (up to and including the empty line).
pub(super) fn head_len(message: &[u8]) -> usize {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4)
}

pub(super) fn bad_request() -> Vec<u8> {
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
}

/// `time` as an HTTP-date (IMF-fixdate, RFC 9110 section 5.6.7), always in GMT.
pub fn http_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .expect("a date after 1970")
        .as_secs();
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let of_day = secs % 86_400;
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
pub(super) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

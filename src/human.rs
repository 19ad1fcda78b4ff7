//! Sizes and times as a person reads them: the one formatting the report, the
//! progress lines and the policy tools share, so that none of them depends on
//! another for it.

use std::time::Duration;

/// A size for a person: bytes below 1 KiB, else KiB, MiB or GiB with one decimal
/// (`16.0 MiB`). Exact byte counts are in the JSON.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up a unit when the value would print as 1024.0 or more.
    while unit + 1 < UNITS.len() && value >= 1023.95 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration as a clock, whole seconds rounded up: `0:05`, `12:34`, `1:02:03`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs_f64().ceil() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_pick_the_unit_and_keep_one_decimal() {
        for (bytes, want) in [
            (0, "0 B"),
            (1, "1 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (10 * 1024 + 100, "10.1 KiB"),
            (1024 * 1024 - 1, "1.0 MiB"),
            (1024 * 1024, "1.0 MiB"),
            (16 * 1024 * 1024, "16.0 MiB"),
            (256 * 1024 * 1024 + 50_000, "256.0 MiB"),
            (3 * 1024 * 1024 * 1024 / 2, "1.5 GiB"),
            (5000 * 1024 * 1024 * 1024, "5000.0 GiB"),
            (u64::MAX, "17179869184.0 GiB"),
        ] {
            assert_eq!(size(bytes), want, "{bytes} bytes");
        }
    }

    #[test]
    fn clocks_round_up_to_the_second_and_show_hours_only_when_there_are_any() {
        assert_eq!(clock(Duration::ZERO), "0:00");
        assert_eq!(clock(Duration::from_millis(4100)), "0:05");
        assert_eq!(clock(Duration::from_secs(754)), "12:34");
        assert_eq!(clock(Duration::from_secs(3600)), "1:00:00");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }
}

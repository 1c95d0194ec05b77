//! The one duration syntax of narun: command-line flags (`--wait=60s`,
//! `--status-interval 300ms`, `--timeout`), spec keys (`restart.delay`,
//! `readiness.timeout`, …) and the gateway's YAML (`routes[].timeout`).
//!
//! A bare integer is seconds (`10`, as the Go gateway's numbers); anything
//! else is humantime's spelling: `500ms`, `10s`, `2m`, `1h`, `1h 30m`.

use std::time::Duration;

/// Parse `s` (surrounding spaces ignored).
pub fn parse(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{s:?} is too many seconds"));
    }
    humantime::parse_duration(text).map_err(|_| {
        format!("{s:?} is not a duration: expected e.g. 500ms, 10s, 2m or 1h (a bare number is seconds)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_syntax() {
        let ok: &[(&str, Duration)] = &[
            ("10", Duration::from_secs(10)),
            (" 10 ", Duration::from_secs(10)),
            ("0", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1h 30m", Duration::from_secs(5400)),
            ("300ms", Duration::from_millis(300)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
        ];
        for (s, d) in ok {
            assert_eq!(parse(s), Ok(*d), "{s}");
        }
        for bad in ["", "s", "5x", "-1s", "1.5", "99999999999999999999999"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}

//! Go's `time.ParseDuration`, for flags etcdbrctl declares as `time.Duration` (druid writes
//! them with `Duration.String()`: `8m0s`, `30m0s`, `1h0m0s`, `500ms`, `0s`).

use std::time::Duration;

/// A non-negative Go duration: a sequence of decimal numbers (fractions allowed) each with a
/// unit `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; `0` alone is allowed. A leading `+` is accepted
/// and a negative value is refused (no flag here means anything by it).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("{s:?} is not a duration like 30m0s, 1h, 1.5s or 500ms: {why}");
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err(bad("negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad("expected a number"));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        let v: f64 = num.parse().map_err(|_| bad("expected a number"))?;
        nanos += v * scale;
        rest = next;
    }
    // Go's limit: an int64 of nanoseconds.
    if nanos > i64::MAX as f64 {
        return Err(bad("out of range"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// A Go duration that must be above zero (etcdbrctl's `CompactorConfig.Validate` for the
/// snapshot and defrag timeouts).
pub fn parse_positive_go_duration(s: &str) -> Result<Duration, String> {
    let d = parse_go_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?}: the timeout must be greater than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("8m0s"), Ok(ms(480_000)));
        assert_eq!(parse_go_duration("1h0m0s"), Ok(ms(3_600_000)));
        assert_eq!(parse_go_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_go_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_go_duration("+2m"), Ok(ms(120_000)));
        assert_eq!(parse_go_duration("1us"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_go_duration("1µs"), Ok(Duration::from_micros(1)));
        for bad in ["", "1", "1d", "-1s", "s", "1..5s", "1s2", "3 m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_positive_go_duration("0s").is_err());
        assert_eq!(parse_positive_go_duration("30m0s"), Ok(ms(1_800_000)));
    }
}

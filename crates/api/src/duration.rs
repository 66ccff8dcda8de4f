//! Durations as written in manifests: `90s`, `10m`, `1h`, `1h30m`, `2d`.

use std::time::Duration;

/// The longest duration any field accepts: ten years. Every time computed from a duration stays
/// far inside the calendar (`99999999999d` overflowed `since + learning` and panicked).
pub const MAX: Duration = Duration::from_secs(3650 * 86_400);

/// Parses a duration made of `<n>d`, `<n>h`, `<n>m` and `<n>s` parts, largest unit first, each
/// unit at most once, at most `MAX`. Returns `None` for anything else, including an empty string.
pub fn parse(s: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_rank = usize::MAX;
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (rank, unit) = match c {
            'd' => (3, 86_400),
            'h' => (2, 3_600),
            'm' => (1, 60),
            's' => (0, 1),
            _ => return None,
        };
        if digits.is_empty() || rank >= last_rank {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        last_rank = rank;
        any = true;
    }
    (any && digits.is_empty() && total <= MAX.as_secs()).then(|| Duration::from_secs(total))
}

/// Formats whole seconds compactly (`1h30m`, `10m`, `45s`).
pub fn format(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= secs {
            out.push_str(&format!("{}{unit}", s / secs));
            s %= secs;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_manifests_use() {
        let cases = [
            ("10m", Some(600)),
            ("1h", Some(3600)),
            ("1h30m", Some(5400)),
            ("900s", Some(900)),
            ("2d", Some(172_800)),
            ("1d2h3m4s", Some(93_784)),
            ("", None),
            ("h", None),
            ("10", None),
            ("10x", None),
            ("30m1h", None),
            ("1h1h", None),
            ("-5m", None),
            ("1.5h", None),
            ("99999999999999999999d", None),
            ("99999999999d", None),
            ("3650d", Some(3650 * 86_400)),
            ("3650d1s", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want.map(Duration::from_secs), "parse({input:?})");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in [1, 59, 60, 61, 600, 3600, 5400, 86_400, 93_784] {
            let d = Duration::from_secs(s);
            assert_eq!(parse(&format(d)), Some(d));
        }
    }
}

//! Durations as written in manifests: `90s`, `10m`, `1h`, `1h30m`, `2d`.

use kube_core::{Message, Rule};
use std::time::Duration;

/// The form of a duration field in the CRDs: what `parse` reads (parts largest unit first, each
/// unit at most once), each part at most 6 digits. Its bound is the CEL rule of `at_most`.
pub const PATTERN: &str = r"^([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?$";

/// The longest string `PATTERN` matches (`999999d999999h999999m999999s`); `maxLength` of each
/// duration field, which also bounds what the API server estimates its rule to cost.
pub const MAX_LENGTH: u32 = 28;

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

/// The CEL validation rule (`x-kubernetes-validations`) of a duration field written in the form of
/// `pattern`: it adds up to at most `max`. The API server holds it while the operator is down. A
/// value not in that form is left to the pattern: the rule judges only well-formed values, so it
/// never fails to evaluate. Its message is the value followed by `says` ("is longer than …").
pub fn at_most(pattern: &str, max: Duration, says: &str) -> Rule {
    assert!(!pattern.contains('\'') && !says.contains('\''), "quoted into CEL string literals");
    let part = |unit: char| format!("int('0' + self.find('[0-9]+{unit}').replace('{unit}', ''))");
    let seconds = format!("{} * 86400 + {} * 3600 + {} * 60 + {}", part('d'), part('h'), part('m'), part('s'));
    Rule::new(format!("!self.matches(r'{pattern}') || {seconds} <= {}", max.as_secs()))
        .message(Message::Expression(format!("self + ' {says}'")))
}

/// The rule of every duration field but the token TTL: at most `MAX`, ten years.
pub fn at_most_ten_years() -> Rule {
    at_most(
        PATTERN,
        MAX,
        &format!(
            "is longer than {} (ten years), the longest duration SOC Warden accepts: write a shorter one, such as 15m, 24h or 7d",
            format(MAX)
        ),
    )
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

    /// The pattern itself is checked against `parse` by a property test
    /// (`crates/core/tests/properties.rs`, which has a regex engine).
    #[test]
    fn the_longest_well_formed_duration_fits_and_is_refused_by_the_bound() {
        let longest = "999999d999999h999999m999999s";
        assert_eq!(longest.len(), MAX_LENGTH as usize);
        assert!(parse(longest).is_none(), "beyond MAX: the CEL rule refuses what the pattern admits");
        assert_eq!(parse("3650d"), Some(MAX));
    }

    #[test]
    fn the_rule_adds_up_every_part_and_names_the_bound() {
        let r = at_most_ten_years();
        for part in [
            "[0-9]+d')",
            "[0-9]+h')",
            "[0-9]+m')",
            "[0-9]+s')",
            "* 86400",
            "* 60 + int(",
            "<= 315360000",
            "matches(r'^(",
        ] {
            assert!(r.rule.contains(part), "{part} in {}", r.rule);
        }
        let Some(Message::Expression(m)) = r.message else { panic!("a message expression") };
        assert!(m.contains("is longer than 3650d (ten years)") && m.contains("write a shorter one"), "{m}");
    }

    #[test]
    fn format_round_trips() {
        for s in [1, 59, 60, 61, 600, 3600, 5400, 86_400, 93_784] {
            let d = Duration::from_secs(s);
            assert_eq!(parse(&format(d)), Some(d));
        }
    }
}

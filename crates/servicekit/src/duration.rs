//! Durations on the command line.
//!
//! The course's servers took plain numbers of seconds (`--checkpoint-interval=10`); people also
//! write `500ms` or `1m`. Both are accepted: a bare number (integer or decimal) is seconds,
//! anything else goes to `humantime`.
use std::time::Duration;

/// Why a duration did not parse. The message names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "empty duration: expected seconds (e.g. 10 or 1.5) or a number with a unit (e.g. 500ms, 10s, 1m)"
    )]
    Empty,
    #[error("invalid duration {value:?}: {reason}")]
    Invalid { value: String, reason: String },
}

/// Parses `s` as a duration: `10` and `1.5` are seconds; `500ms`, `10s`, `1m 30s` use units.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = |reason: String| DurationError::Invalid {
        value: s.to_string(),
        reason,
    };
    if is_bare_number(t) {
        let secs: f64 = t
            .parse()
            .map_err(|e| invalid(format!("not a number of seconds: {e}")))?;
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| invalid("too large a number of seconds".to_string()));
    }
    humantime::parse_duration(t).map_err(|e| {
        invalid(format!(
            "{e} (expected seconds such as 10 or 1.5, or a number with a unit such as 500ms, 10s, 1m)"
        ))
    })
}

/// [`parse_duration`] shaped for clap: `#[arg(value_parser = parse_duration_arg)]`.
pub fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Digits with at most one decimal point, and at least one digit: `10`, `1.5`, `.5`, `2.`.
fn is_bare_number(s: &str) -> bool {
    let mut dots = 0;
    let mut digits = 0;
    for c in s.chars() {
        match c {
            '0'..='9' => digits += 1,
            '.' => dots += 1,
            _ => return false,
        }
    }
    digits > 0 && dots <= 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let ok: &[(&str, Duration)] = &[
            ("10", Duration::from_secs(10)),
            ("0", Duration::ZERO),
            ("1.5", Duration::from_millis(1500)),
            (".25", Duration::from_millis(250)),
            ("2.", Duration::from_secs(2)),
            (" 7 ", Duration::from_secs(7)),
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("1m", Duration::from_secs(60)),
            ("1m 30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("250us", Duration::from_micros(250)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_duration(input).as_ref(), Ok(want), "input {input:?}");
        }
        for bad in [
            "",
            "  ",
            "soon",
            "-1",
            "1..5",
            "10 parsecs",
            "1e3",
            "inf",
            "NaN",
            "ms",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            let msg = err.to_string();
            if !bad.trim().is_empty() {
                assert!(msg.contains(&format!("{bad:?}")), "{msg} names {bad:?}");
            }
        }
    }

    #[test]
    fn huge_number_is_an_error_not_a_panic() {
        let err = parse_duration(&"9".repeat(400));
        assert!(matches!(err, Err(DurationError::Invalid { .. })), "{err:?}");
    }

    #[test]
    fn clap_adapter_keeps_the_message() {
        let msg = parse_duration_arg("fortnight").expect_err("not a duration");
        assert!(msg.contains("\"fortnight\""), "{msg}");
        assert_eq!(parse_duration_arg("3"), Ok(Duration::from_secs(3)));
    }

    proptest! {
        #[test]
        fn bare_integers_are_seconds(n in 0u32..) {
            prop_assert_eq!(parse_duration(&n.to_string()), Ok(Duration::from_secs(n.into())));
        }

        #[test]
        fn milliseconds_with_unit(n in 0u32..) {
            prop_assert_eq!(parse_duration(&format!("{n}ms")), Ok(Duration::from_millis(n.into())));
        }

        #[test]
        fn decimals_are_fractional_seconds(whole in 0u32..100_000, millis in 0u32..1000) {
            let d = parse_duration(&format!("{whole}.{millis:03}")).expect("decimal parses");
            let want = u128::from(whole) * 1000 + u128::from(millis);
            // f64 rounding may cost a nanosecond or so, never a millisecond.
            prop_assert!(d.as_millis().abs_diff(want) <= 1, "{d:?} vs {want} ms");
        }

        #[test]
        fn humantime_output_round_trips(ms in 1u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            let text = humantime::format_duration(d).to_string();
            prop_assert_eq!(parse_duration(&text), Ok(d));
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_duration(&s);
        }
    }
}

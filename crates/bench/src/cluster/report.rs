//! The rows: a value, what it is compared with, the goal, PASS/FAIL; as one Markdown table.
use crate::stats::{Summary, quantile};

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub what: String,
    pub value: String,
    /// The baseline of the same run and the ratio to it, or what else puts the value in scale.
    pub against: String,
    pub goal: String,
    /// `None`: no goal to meet.
    pub pass: Option<bool>,
}

impl Row {
    pub fn new(what: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            what: what.into(),
            value: value.into(),
            against: "-".into(),
            goal: "-".into(),
            pass: None,
        }
    }

    pub fn against(mut self, a: impl Into<String>) -> Row {
        self.against = a.into();
        self
    }

    pub fn goal(mut self, goal: impl Into<String>, pass: bool) -> Row {
        self.goal = goal.into();
        self.pass = Some(pass);
        self
    }

    /// A measurement that could not be made: it fails its goal, saying why.
    pub fn failed(what: impl Into<String>, goal: &str, why: &anyhow::Error) -> Row {
        let why = format!("{why:#}").replace('|', "/").replace('\n', " ");
        let mut r = Row::new(what, format!("not measured: {why}"));
        if goal != "-" {
            r = r.goal(goal, false);
        }
        r
    }
}

/// Median, p99 (linear between closest ranks), min and max of `ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(ms: &[f64]) -> Option<Spread> {
    let s = Summary::of(ms)?;
    let mut sorted: Vec<f64> = ms.iter().copied().filter(|x| !x.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    Some(Spread {
        n: s.n,
        median: s.median,
        p99: quantile(&sorted, 0.99)?,
        min: s.min,
        max: s.max,
    })
}

/// The table, then how many goals were met.
pub fn markdown(rows: &[Row]) -> String {
    let mut out =
        String::from("| measurement | value | against | goal | result |\n|---|---|---|---|---|\n");
    for r in rows {
        let verdict = match r.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "-",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {verdict} |\n",
            r.what, r.value, r.against, r.goal
        ));
    }
    let goals = rows.iter().filter(|r| r.pass.is_some()).count();
    let met = rows.iter().filter(|r| r.pass == Some(true)).count();
    out.push_str(&format!("\n{met} of {goals} goals met.\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_of_two_hundred_samples_sits_between_the_two_largest() {
        let ms: Vec<f64> = (1..=200).map(f64::from).collect();
        let s = spread(&ms).unwrap();
        assert_eq!((s.n, s.min, s.max), (200, 1.0, 200.0));
        assert!((s.median - 100.5).abs() < 1e-9);
        // Rank 0.99 × 199 = 197.01 (0-based): 198 + 0.01.
        assert!((s.p99 - 198.01).abs() < 1e-9, "{}", s.p99);
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn the_table_says_pass_fail_and_counts_goals() {
        let rows = [
            Row::new("a", "1 ms").goal("≤ 2 ms", true),
            Row::new("b", "3 ms").goal("≤ 2 ms", false),
            Row::new("c", "x").against("y"),
            Row::failed("d", "≥ 1", &anyhow::anyhow!("etcd | gone\nreally")),
        ];
        let t = markdown(&rows);
        assert!(t.contains("| a | 1 ms | - | ≤ 2 ms | PASS |"), "{t}");
        assert!(t.contains("| b | 3 ms | - | ≤ 2 ms | FAIL |"), "{t}");
        assert!(t.contains("| c | x | y | - | - |"), "{t}");
        assert!(
            t.contains("not measured: etcd / gone really | - | ≥ 1 | FAIL |"),
            "{t}"
        );
        assert!(t.ends_with("1 of 3 goals met.\n"), "{t}");
    }
}

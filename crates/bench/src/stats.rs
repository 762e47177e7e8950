//! Order statistics of a handful of samples: median, p10, p90, min, max.
use serde::Serialize;

/// The `q`-quantile (0 ≤ q ≤ 1) of `sorted` by linear interpolation between closest ranks
/// (the "R-7" method of most spreadsheets). `None` for no samples.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    match sorted.len() {
        0 => None,
        1 => Some(sorted[0]),
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            let frac = pos - lo as f64;
            Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
        }
    }
}

/// The summary printed for a series of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no samples; NaNs are ignored.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        s.sort_by(f64::total_cmp);
        Some(Summary {
            n: s.len(),
            min: *s.first()?,
            p10: quantile(&s, 0.1)?,
            median: quantile(&s, 0.5)?,
            p90: quantile(&s, 0.9)?,
            max: *s.last()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_of_odd_and_even_counts() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.n, s.min, s.median, s.max), (5, 1.0, 3.0, 5.0));
        assert!((s.p90 - 4.6).abs() < 1e-9, "{}", s.p90);
        assert!((s.p10 - 1.4).abs() < 1e-9, "{}", s.p10);
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        // 1..=10: p90 at rank 8.1 → 9.1
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((Summary::of(&v).unwrap().p90 - 9.1).abs() < 1e-9);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        let s = Summary::of(&[7.0, f64::NAN]).unwrap();
        assert_eq!(
            (s.n, s.min, s.p10, s.median, s.p90, s.max),
            (1, 7.0, 7.0, 7.0, 7.0, 7.0)
        );
        assert_eq!(quantile(&[1.0, 2.0], 2.0), Some(2.0));
    }
}

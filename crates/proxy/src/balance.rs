//! Choosing a backend for one attempt.
//!
//! P2C: two backends drawn at random among those available, and the one with fewer requests
//! in flight wins; ties go to the one with the lower average response time, so an idle slow
//! backend does not take a lone request from an idle fast one. Round robin takes the next
//! available one in turn. Either way, the backends this request already tried are skipped.
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::RngExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    P2c,
    RoundRobin,
}

pub struct Balancer {
    policy: Policy,
    next: AtomicUsize,
}

/// What the choice looks at: in flight, then the latency average.
pub type Load = (usize, u64);

impl Balancer {
    pub fn new(policy: Policy) -> Balancer {
        Balancer {
            policy,
            next: AtomicUsize::new(0),
        }
    }

    /// The index of the chosen one of `n` candidates, of which `ok(i)` says which may be
    /// chosen and `load(i)` how busy each is; `None` when none may be.
    pub fn pick(
        &self,
        n: usize,
        ok: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> Load,
    ) -> Option<usize> {
        match self.policy {
            Policy::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
            }
            Policy::P2c => {
                let mut rng = rand::rng();
                p2c(n, ok, load, |k| rng.random_range(0..k))
            }
        }
    }
}

/// P2C with the random draws given (`draw(k)` is in `0..k`), so tests can fix them.
pub fn p2c(
    n: usize,
    ok: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> Load,
    mut draw: impl FnMut(usize) -> usize,
) -> Option<usize> {
    let k = (0..n).filter(|&i| ok(i)).count();
    let nth = |m: usize| (0..n).filter(|&i| ok(i)).nth(m);
    match k {
        0 => None,
        1 => nth(0),
        _ => {
            let a = draw(k);
            let mut b = draw(k - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (nth(a)?, nth(b)?);
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2c_takes_the_less_loaded_of_two_and_skips_the_unavailable() {
        let loads = [(5, 0), (1, 0), (0, 0), (0, 9)];
        // Draws 0 and 0 → candidates #0 and #1 among the available.
        let all = |_: usize| true;
        let mut draws = [0, 0].into_iter();
        assert_eq!(
            p2c(4, all, |i| loads[i], |_| draws.next().unwrap_or(0)),
            Some(1)
        );
        // Ties on in-flight go to the lower latency average.
        let mut draws = [3, 2].into_iter();
        assert_eq!(
            p2c(4, all, |i| loads[i], |_| draws.next().unwrap_or(0)),
            Some(2)
        );
        // Only #0 and #3 available.
        let some = |i: usize| i == 0 || i == 3;
        let mut draws = [1, 0].into_iter();
        assert_eq!(
            p2c(4, some, |i| loads[i], |_| draws.next().unwrap_or(0)),
            Some(3)
        );
        assert_eq!(p2c(4, |i| i == 0, |i| loads[i], |_| 0), Some(0));
        assert_eq!(p2c(4, |_| false, |i| loads[i], |_| 0), None);
        assert_eq!(p2c(0, all, |i| loads[i], |_| 0), None);
    }

    #[test]
    fn p2c_spreads_equal_backends() {
        let b = Balancer::new(Policy::P2c);
        let mut hits = [0u32; 3];
        for _ in 0..3000 {
            let i = b.pick(3, |_| true, |_| (0, 0)).expect("one");
            hits[i] += 1;
        }
        assert!(hits.iter().all(|h| *h > 700), "{hits:?}");
    }

    #[test]
    fn round_robin_in_turn_skipping_the_unavailable() {
        let b = Balancer::new(Policy::RoundRobin);
        let picks: Vec<_> = (0..6)
            .map(|_| b.pick(3, |i| i != 1, |_| (0, 0)).expect("one"))
            .collect();
        assert_eq!(picks, [0, 2, 2, 0, 2, 2]);
        assert_eq!(b.pick(3, |_| false, |_| (0, 0)), None);
    }
}

//! `placement::place` alone: 1 000 jobs of a mixed shape on 100 nodes, one call, timed.
use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Result, bail};
use placement::{Input, Instance, Node, Resources};

/// A small deterministic generator (xorshift64*): the same input on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// `nodes` machines of three sizes (16, 32 and 64 cores; 64, 128 and 256 GB), some of each
/// already running node-local work, two cordoned; `jobs` jobs of 1–5 instances asking
/// 0.1–2 cores and 64 MB–2 GB each, one in ten avoiding a node where it failed.
pub fn input(nodes: usize, jobs: usize) -> Input {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let nodes: Vec<Node> = (0..nodes)
        .map(|i| Node {
            name: format!("n{i:03}"),
            capacity: Resources::new(
                [16_000, 32_000, 64_000][i % 3],
                [65_536, 131_072, 262_144][(i / 3) % 3],
            ),
            allocated: Resources::new(rng.pick(&[0, 500, 1_000, 2_000]), rng.pick(&[0, 1_024])),
            cordoned: i % 50 == 49,
            alive: true,
        })
        .collect();
    let mut pending = Vec::new();
    for j in 0..jobs {
        let count = 1 + rng.next() % 5;
        let demand = Resources::new(
            rng.pick(&[100, 250, 500, 1_000, 2_000]),
            rng.pick(&[64, 128, 256, 512, 1_024, 2_048]),
        );
        let avoid = if j % 10 == 0 {
            vec![format!("n{:03}", rng.next() % nodes.len() as u64)]
        } else {
            Vec::new()
        };
        for i in 1..=count {
            pending.push(Instance {
                job: format!("job{j:04}"),
                instance: format!("job{j:04}-{i}"),
                demand,
                avoid: avoid.clone(),
            });
        }
    }
    Input {
        nodes,
        pending,
        existing: Vec::new(),
    }
}

/// What one placement pass took, and what it decided.
pub struct Timed {
    pub ms: Vec<f64>,
    pub instances: usize,
    pub placed: usize,
}

/// Times `runs` calls of `place` on the same input (after one untimed warm-up), and checks
/// each plan: every instance decided once, no node given more than it has free.
pub fn measure(nodes: usize, jobs: usize, runs: usize) -> Result<Timed> {
    let input = input(nodes, jobs);
    let _ = placement::place(&input);
    let mut ms = Vec::new();
    let mut placed = 0;
    for _ in 0..runs {
        crate::interrupt::check()?;
        let t = Instant::now();
        let plan = placement::place(&input);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if plan.placed.len() + plan.unplaced.len() != input.pending.len() {
            bail!(
                "placement decided {} + {} of {} instances",
                plan.placed.len(),
                plan.unplaced.len(),
                input.pending.len()
            );
        }
        let mut used: HashMap<&str, Resources> = input
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.allocated))
            .collect();
        for p in &plan.placed {
            let u = used.entry(p.node.as_str()).or_default();
            *u = u.saturating_add(p.demand);
        }
        for n in &input.nodes {
            if !n.capacity.covers(used[n.name.as_str()]) {
                bail!("placement over-committed node {}", n.name);
            }
        }
        placed = plan.placed.len();
    }
    Ok(Timed {
        ms,
        instances: input.pending.len(),
        placed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_is_the_same_every_time_and_has_the_asked_shape() {
        let a = input(100, 1_000);
        assert_eq!(a, input(100, 1_000));
        assert_eq!(a.nodes.len(), 100);
        let mut jobs: Vec<&str> = a.pending.iter().map(|i| i.job.as_str()).collect();
        jobs.dedup();
        assert_eq!(jobs.len(), 1_000);
        // Counts of 1 to 5: between 1 000 and 5 000 instances, and more than one shape.
        assert!((1_000..=5_000).contains(&a.pending.len()));
        assert!(a.pending.iter().any(|i| i.demand != a.pending[0].demand));
        assert_eq!(a.nodes.iter().filter(|n| n.cordoned).count(), 2);
    }

    #[test]
    fn a_small_run_places_and_checks_its_plans() {
        let t = measure(10, 20, 2).unwrap();
        assert_eq!(t.ms.len(), 2);
        assert!(t.placed > 0 && t.placed <= t.instances);
    }
}

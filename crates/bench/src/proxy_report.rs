//! The proxy benchmark's Markdown: one table with a column per front door, the issue's
//! targets as PASS/FAIL lines, and the failures seen.
use crate::proxy::{ProxyResults, Row};
use crate::proxy_load::Paced;
use std::fmt::Write as _;

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.digits$}"))
}

/// The Markdown section: one table, the targets, notes.
pub fn markdown(r: &ProxyResults) -> String {
    let p = &r.plan;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### Proxy: ours against HAProxy and nginx\n\n\
         Two time servers (no simulated delay) under our supervisor, ports {}; every front door on one thread. \
         wrk: `wrk -t1 -c{} -d{}s`, median of {} runs. Fixed rate: {} req/s over {} keep-alive connections, {} s \
         (latency from each request's scheduled send). Kill run: the same rate for {} s, a time server SIGKILLed every {} ms, in turn.\n",
        r.port_range,
        p.wrk_conns,
        p.wrk_secs,
        p.wrk_runs,
        p.rate,
        p.conns,
        p.latency_secs,
        p.kill_secs,
        p.kill_every_ms
    );
    let rows: Vec<&Row> = r.rows.iter().collect();
    let header: Vec<String> = rows
        .iter()
        .map(|x| {
            format!("{} {}", x.front, x.version.as_deref().unwrap_or(""))
                .trim()
                .to_string()
        })
        .collect();
    let _ = writeln!(
        md,
        "| | {} |\n|---|{}",
        header.join(" | "),
        "---|".repeat(rows.len())
    );
    let haproxy = rows.iter().find(|x| x.front == "haproxy");
    let line = |md: &mut String, label: &str, f: &dyn Fn(&Row) -> String| {
        let cells: Vec<String> = rows
            .iter()
            .map(|x| {
                if x.error.is_some() && x.rps.is_none() {
                    "–".into()
                } else {
                    f(x)
                }
            })
            .collect();
        let _ = writeln!(md, "| {label} | {} |", cells.join(" | "));
    };
    line(&mut md, "requests/s (wrk)", &|x| cell(x.rps, 0));
    line(&mut md, "requests per CPU-second of the front door", &|x| {
        cell(x.rps_per_core, 0)
    });
    line(&mut md, "per CPU-second, ratio to HAProxy", &|x| {
        cell(
            x.rps_per_core
                .zip(haproxy.and_then(|h| h.rps_per_core))
                .map(|(a, b)| a / b),
            2,
        )
    });
    line(&mut md, "p50 / p99 at the fixed rate, ms", &|x| {
        format!("{} / {}", cell(x.p50_ms, 3), cell(x.p99_ms, 3))
    });
    line(&mut md, "added p50 / p99 (minus direct), ms", &|x| {
        format!("{} / {}", cell(x.added_p50_ms, 3), cell(x.added_p99_ms, 3))
    });
    line(&mut md, "errors at the fixed rate", &|x| {
        x.latency_errors.map_or("–".into(), |e| e.to_string())
    });
    line(
        &mut md,
        "kill run: errors / requests (kills)",
        &|x| match &x.kill {
            Some(k) => format!("**{}** / {} ({})", k.errors(), k.sent, x.kills),
            None => "–".into(),
        },
    );
    let _ = writeln!(
        md,
        "\nDirect to the time servers at the fixed rate: p50 {} ms, p99 {} ms.",
        cell(r.direct.p50_ms, 3),
        cell(r.direct.p99_ms, 3)
    );
    if let Some(f) = &r.follow_ms {
        let _ = writeln!(
            md,
            "Ours follows a restart: SIGKILL → the new port listed in `/backends`: median {:.1} ms, max {:.1} ms (n={}).",
            f.median, f.max, f.n
        );
    }
    md.push_str("\nTargets (issue 16):\n\n```\n");
    md.push_str(&targets(r));
    md.push_str("```\n");
    for x in &r.rows {
        if let Some(e) = &x.error {
            let _ = writeln!(md, "- {}: {e}", x.front);
        }
        if let Some(k) = x.kill.as_ref().filter(|k| !k.examples.is_empty()) {
            let _ = writeln!(
                md,
                "- {} kill run, first failures: {}",
                x.front,
                k.examples.join("; ")
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(md, "- {n}");
    }
    md
}

/// PASS/FAIL lines for the issue's goals.
pub fn targets(r: &ProxyResults) -> String {
    let get = |f: &str| r.rows.iter().find(|x| x.front == f);
    let (ours, haproxy) = (get("ours"), get("haproxy"));
    let mut t = String::new();
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let ours_errors = ours.and_then(|o| o.kill.as_ref()).map(Paced::errors);
    let peer_errors: Vec<u64> = r
        .rows
        .iter()
        .filter(|x| x.front != "ours")
        .filter_map(|x| x.kill.as_ref().map(Paced::errors))
        .collect();
    if let Some(e) = ours_errors {
        let _ = writeln!(
            t,
            "{} no errors in the kill run (ours: {e}; peers: {peer_errors:?})",
            verdict(e == 0)
        );
    }
    if let (Some(o), Some(h)) = (
        ours.and_then(|o| o.rps_per_core),
        haproxy.and_then(|h| h.rps_per_core),
    ) {
        let _ = writeln!(
            t,
            "{} requests per CPU-second ≥ 0.8 × HAProxy's: {:.2} ×",
            verdict(o >= 0.8 * h),
            o / h
        );
    }
    if let (Some(o), Some(h)) = (
        ours.and_then(|o| o.added_p99_ms),
        haproxy.and_then(|h| h.added_p99_ms),
    ) {
        let _ = writeln!(
            t,
            "{} added p99 no worse than HAProxy's: {o:.3} ms vs {h:.3} ms",
            verdict(o <= h)
        );
    }
    t
}

//! Free loopback ports.
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// `n` consecutive loopback ports that are all free now, as (first, last).
///
/// Ranges are handed out from a per-process cursor that starts at a pid-dependent offset, so
/// parallel test processes rarely probe the same ports.
pub fn free_port_range(n: u16) -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + ((std::process::id() as u16) % 200) * 100;
    for _ in 0..2_000 {
        let off = NEXT.fetch_add(n, Ordering::Relaxed) % 20_000;
        let first = base.wrapping_add(off);
        if !(20_000..60_000).contains(&first) || first.checked_add(n).is_none() {
            continue;
        }
        let last = first + n - 1;
        let all_free = (first..=last).all(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok());
        if all_free {
            return (first, last);
        }
    }
    panic!("no free range of {n} loopback ports found");
}

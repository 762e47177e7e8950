//! Binding the API's address before anything starts, and saying who holds it when it is taken.
//!
//! A supervisor without its API would let `supervisor ctl` reach whatever else answers there
//! (another supervisor, acting on its tasks). So a taken address, the default one as much as an
//! explicit one, is fatal (exit 1) before any task is started, and the message says what holds
//! it: the listening socket's inode from `/proc/net/tcp{,6}`, then the process with that socket
//! among its descriptors (`/proc/*/fd`), and, if that is a supervisor, its dump file and
//! instance from its runtime file.
use crate::runtime::{self, Liveness};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// Binds the API address. `explicit`: given with `--listen` (else it is the default).
pub fn bind(addr: SocketAddr, explicit: bool) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| {
        let what = if explicit {
            format!("cannot listen on --listen={addr} for the API: {e}")
        } else {
            format!("cannot listen on the default API address {addr}: {e}")
        };
        let mut msg = what;
        if e.kind() == std::io::ErrorKind::AddrInUse {
            msg.push_str(&format!("\n  {}", describe_holder(addr)));
        }
        msg.push_str(
            "\n  pick a free address with --listen=127.0.0.1:PORT, or run without the API with --listen=none",
        );
        msg
    })
}

/// One sentence about what listens on `addr`.
pub fn describe_holder(addr: SocketAddr) -> String {
    let Some(sock) = listening_socket(addr) else {
        return "no listening socket for it is visible in /proc/net/tcp (it may be in another network namespace)".into();
    };
    let Some(pid) = pid_with_socket(sock.inode) else {
        return format!(
            "it is held by a process of uid {} that this user cannot inspect (try `ss -ltnp` as root)",
            sock.uid
        );
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let args = cmdline(pid);
    if comm == "supervisor" || args.first().is_some_and(|a| a.ends_with("/supervisor")) {
        if let Some(info) = dump_of(pid, &args)
            .and_then(|d| runtime::read(&d).ok())
            .filter(|i| i.pid == pid as u32 && i.liveness() == Liveness::Alive)
        {
            return format!(
                "it is held by another supervisor: {} (talk to it with `supervisor ctl --dumpfile={}`)",
                info.describe(),
                info.dump.display()
            );
        }
        return format!(
            "it is held by another supervisor: pid {pid} ({})",
            shown(&args)
        );
    }
    format!("it is held by pid {pid} ({comm}: {})", shown(&args))
}

fn shown(args: &[String]) -> String {
    let s = args.join(" ");
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The `--dumpfile` of a supervisor's command line, resolved against its working directory.
fn dump_of(pid: i32, args: &[String]) -> Option<PathBuf> {
    let value = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--dumpfile=")
            .map(str::to_string)
            .or_else(|| {
                (a == "--dumpfile")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
    })?;
    let p = Path::new(&value);
    if p.is_absolute() {
        return Some(p.to_path_buf());
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    Some(cwd.join(p))
}

/// A listening TCP socket from `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    pub addr: SocketAddr,
    pub uid: u32,
    pub inode: u64,
}

/// The listening socket that keeps `addr` from being bound: same port, and the same address or
/// a wildcard on either side.
pub fn listening_socket(addr: SocketAddr) -> Option<Socket> {
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            found.extend(text.lines().skip(1).filter_map(parse_line));
        }
    }
    let want = canonical(addr.ip());
    let matches = |s: &Socket| {
        let have = canonical(s.addr.ip());
        s.addr.port() == addr.port()
            && (have == want || have.is_unspecified() || want.is_unspecified())
    };
    // An exact address match first: it is what the kernel complained about.
    found
        .iter()
        .find(|s| matches(s) && canonical(s.addr.ip()) == want)
        .or_else(|| found.iter().find(|s| matches(s)))
        .copied()
}

/// IPv4-mapped IPv6 addresses as IPv4, so `[::ffff:127.0.0.1]` matches `127.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// One line of `/proc/net/tcp{,6}`, if it is a listening socket:
/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn parse_line(line: &str) -> Option<Socket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.get(3) != Some(&"0A") {
        return None;
    }
    let (ip, port) = f.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = parse_hex_ip(ip)?;
    Some(Socket {
        addr: SocketAddr::new(ip, port),
        uid: f.get(7)?.parse().ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

/// The kernel prints each 32-bit word of the address in host byte order.
fn parse_hex_ip(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let arr: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(arr)))
        }
        _ => None,
    }
}

/// The first process with socket `inode` among its descriptors.
fn pid_with_socket(inode: u64) -> Option<i32> {
    let want = format!("socket:[{inode}]");
    let me = std::process::id() as i32;
    for pid in procio::procfs::all_pids() {
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp_lines() {
        let v4 = "   0: 0100007F:1C03 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_line(v4),
            Some(Socket {
                addr: "127.0.0.1:7171".parse().expect("addr"),
                uid: 1000,
                inode: 123_456
            })
        );
        let v6 = "   1: 00000000000000000000000001000000:1C03 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_line(v6).map(|s| s.addr),
            Some("[::1]:7171".parse().expect("addr"))
        );
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_line(&established), None);
    }

    #[test]
    fn finds_our_own_listener_by_inode() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let sock = listening_socket(addr).expect("listed in /proc/net/tcp");
        assert_eq!(sock.addr, addr);
        // SAFETY: getuid has no preconditions.
        assert_eq!(sock.uid, unsafe { libc::getuid() });
        let ours = std::fs::read_dir("/proc/self/fd")
            .expect("fds")
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|l| l.as_os_str() == format!("socket:[{}]", sock.inode).as_str())
            });
        assert!(ours, "the inode is one of our descriptors");
    }

    #[test]
    fn a_taken_address_names_the_flag() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let e = bind(addr, true).expect_err("taken");
        assert!(e.contains(&format!("--listen={addr}")), "{e}");
        assert!(e.contains("--listen=none"), "{e}");
    }
}

//! A fixed list of backends: published once, followed by nothing. Passive health still ejects
//! and readmits its members.
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;

use super::{Feed, Source, Target};

pub struct Static {
    pub addrs: Vec<SocketAddr>,
}

/// `HOST:PORT,HOST:PORT`: at least one, no duplicates; host names are resolved once, here.
pub fn parse(list: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("{list:?}: an empty entry in the list of backends"));
        }
        let addr = item
            .to_socket_addrs()
            .map_err(|e| format!("{item:?} is not HOST:PORT: {e}"))?
            .next()
            .ok_or_else(|| format!("{item:?} resolves to no address"))?;
        if out.contains(&addr) {
            return Err(format!("{item:?} is listed twice"));
        }
        out.push(addr);
    }
    Ok(out)
}

impl Source for Static {
    fn describe(&self) -> String {
        let list: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        format!("static {}", list.join(","))
    }

    fn run(self: Box<Self>, feed: Feed) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let targets = self
                .addrs
                .iter()
                .map(|a| Target {
                    name: Arc::new(a.to_string()),
                    addr: *a,
                })
                .collect();
            feed.publish(targets);
            feed.connected();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        let v = parse("127.0.0.1:8001,localhost:8002").expect("parses");
        assert_eq!(v[0].to_string(), "127.0.0.1:8001");
        assert_eq!(v[1].port(), 8002);
        for (bad, needle) in [
            ("", "empty entry"),
            ("127.0.0.1:1,,127.0.0.1:2", "empty entry"),
            ("127.0.0.1", "not HOST:PORT"),
            ("127.0.0.1:99999", "not HOST:PORT"),
            ("127.0.0.1:1,127.0.0.1:1", "listed twice"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }
}

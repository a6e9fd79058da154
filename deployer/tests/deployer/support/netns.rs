//! Another machine on the network, as far as a listener can tell: a network
//! namespace of the test's own, joined to this one by a veth pair, so a
//! connection from it arrives on a non-loopback address. A listener bound to
//! every address answers it; one bound to 127.0.0.1 does not. Removed (with
//! both ends of the pair) when dropped.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct OtherNetns {
    name: String,
    /// This machine's address as seen from the namespace.
    pub host_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip is needed (iproute2; scripts/test installs it)");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl OtherNetns {
    pub fn new() -> OtherNetns {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id() % 200 + n;
        let name = format!("dtest-ns-{}-{n}", std::process::id());
        // A /30 in 10.231.0.0/16 of this process's own, named after it.
        let (a, b) = (id / 64 % 256, (id % 64) * 4);
        let host_ip = format!("10.231.{a}.{}", b + 1);
        let inner_ip = format!("10.231.{a}.{}", b + 2);
        let outer = format!("dtv{}o{n}", std::process::id());
        let inner = format!("dtv{}i{n}", std::process::id());
        ip(&["netns", "add", &name]);
        let netns = OtherNetns { name, host_ip };
        ip(&[
            "link",
            "add",
            &outer,
            "type",
            "veth",
            "peer",
            "name",
            &inner,
            "netns",
            &netns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", netns.host_ip),
            "dev",
            &outer,
        ]);
        ip(&["link", "set", &outer, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", netns.name.as_str()];
            all.extend(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{inner_ip}/30"), "dev", &inner]);
        inside(&["link", "set", &inner, "up"]);
        inside(&["link", "set", "lo", "up"]);
        netns
    }

    /// Whether an HTTP GET of `path` on this machine's `port` gets any
    /// answer from inside the namespace.
    pub fn answers(&self, port: u16, path: &str) -> bool {
        let url = format!("http://{}:{port}{path}", self.host_ip);
        Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-s", "-o", "/dev/null"])
            .args(["--max-time", "5", &url])
            .status()
            .expect("curl is needed (scripts/test installs it)")
            .success()
    }
}

impl Drop for OtherNetns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it
        // ours.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

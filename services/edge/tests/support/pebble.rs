//! Debian's pebble (Let's Encrypt's ACME test server) and its
//! pebble-challtestsrv as DNS, on loopback ports, for the TLS tests.
//! Pebble validates HTTP-01 and TLS-ALPN-01 for real, against the ports it
//! is told: the edge's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Pebble {
    children: Vec<Child>,
    /// The ACME directory URL.
    pub directory: String,
    /// The root that signed pebble's own HTTPS certificate (EDGE_ACME_CA_FILE).
    pub listener_ca: PathBuf,
    listener_ca_pem: String,
    management: String,
    pub log: PathBuf,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port` of 127.0.0.1, every name resolving to 127.0.0.1.
    pub async fn start(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
        for tool in ["pebble", "pebble-challtestsrv"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .unwrap()
                    .status
                    .success(),
                "{tool} is missing: apt-get install pebble (scripts/test installs it)"
            );
        }
        std::fs::create_dir_all(dir).unwrap();
        // Pebble's own HTTPS listener needs a certificate for 127.0.0.1.
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edge test pebble listener CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let listener_ca = dir.join("listener-ca.pem");
        std::fs::write(&listener_ca, ca_cert.pem()).unwrap();
        std::fs::write(dir.join("listener-cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("listener-key.pem"), leaf_key.serialize_pem()).unwrap();

        let (acme, management, dns, dns_management) =
            (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("listener-cert.pem"),
            "privateKey": dir.join("listener-key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let log = dir.join("pebble.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut children = Vec::new();
        children.push(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-management", &format!("127.0.0.1:{dns_management}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .stdout(out.try_clone().unwrap())
                .stderr(out.try_clone().unwrap())
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        children.push(
            Command::new("pebble")
                .arg("-config")
                .arg(dir.join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pebble = Pebble {
            children,
            directory: format!("https://127.0.0.1:{acme}/dir"),
            listener_ca,
            listener_ca_pem: ca_cert.pem(),
            management: format!("https://127.0.0.1:{management}"),
            log,
        };
        let client = pebble.client();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if client
                .get(&pebble.directory)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not start:\n{}",
                pebble.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pebble
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.listener_ca_pem.as_bytes()).unwrap(),
            )
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    /// The root that signs the certificates pebble issues.
    pub async fn issuing_root(&self) -> String {
        self.client()
            .get(format!("{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port no one listens on, below the kernel's ephemeral range (32768 and
/// up): a port from that range, once released, can be taken as the local
/// end of any outgoing connection before the test binds it again.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 10_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((start + n * 7) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

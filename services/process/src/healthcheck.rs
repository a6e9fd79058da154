//! The `healthcheck` subcommand's probe: Docker's `HEALTHCHECK` runs the
//! binary itself, because a scratch image has no curl.

use std::time::Duration;

use anyhow::{Context, bail};

/// Asks the server listening on `listen_addr` on this machine for
/// `/healthz`; `Ok` when it answers 2xx.
pub(crate) fn healthcheck(listen_addr: &str) -> anyhow::Result<()> {
    let url = format!("http://{}/healthz", loopback_for(listen_addr)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(4))
            .build()
            .context("cannot build the HTTP client")?;
        let response = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("GET {url} answered {status}: {body}");
        }
        Ok(())
    })
}

/// The address to probe on this machine: the listen address, with a
/// wildcard host replaced by loopback.
fn loopback_for(listen_addr: &str) -> anyhow::Result<String> {
    let (host, port) = listen_addr
        .rsplit_once(':')
        .with_context(|| format!("LISTEN_ADDR {listen_addr:?} has no port"))?;
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        assert_eq!(loopback_for("0.0.0.0:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(loopback_for("[::]:8080").unwrap(), "[::1]:8080");
        assert_eq!(loopback_for("127.0.0.2:1").unwrap(), "127.0.0.2:1");
        assert!(loopback_for("nohost").is_err());
    }
}

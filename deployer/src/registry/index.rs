//! One tag for every platform: an image index (Docker's manifest list)
//! naming each platform's image by digest, put into the registry after the
//! images themselves, so `docker pull repo:version` on an x86_64 host gets
//! the amd64 image and on a Graviton host the arm64 one.

use anyhow::bail;

use super::Registry;
use crate::platform::Platform;

const LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const IMAGE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// One platform's image as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Manifest {
    pub platform: Platform,
    pub digest: String,
    pub size: u64,
}

/// The digest and size of the manifest a push just wrote, from the
/// daemon's last status line (`v1: digest: sha256:… size: 735`).
pub(super) fn pushed_manifest(status: &str) -> Option<(String, u64)> {
    let (_, rest) = status.split_once("digest: ")?;
    let (digest, rest) = rest.split_once(' ')?;
    let size = rest.trim().strip_prefix("size: ")?.trim().parse().ok()?;
    digest
        .starts_with("sha256:")
        .then(|| (digest.to_owned(), size))
}

/// The index naming `manifests`.
pub(super) fn index_body(manifests: &[Manifest]) -> String {
    let entries: Vec<serde_json::Value> = manifests
        .iter()
        .map(|m| {
            serde_json::json!({
                "mediaType": IMAGE,
                "size": m.size,
                "digest": m.digest,
                "platform": {"architecture": m.platform.docker_arch(), "os": "linux"},
            })
        })
        .collect();
    serde_json::json!({"schemaVersion": 2, "mediaType": LIST, "manifests": entries}).to_string()
}

impl Registry {
    /// Puts the index of `manifests` as `repository:tag`; its reference.
    pub(super) async fn put_index(
        &self,
        repository: &str,
        tag: &str,
        manifests: &[Manifest],
    ) -> anyhow::Result<String> {
        let path = self.api_path(repository);
        let url = format!("{}/v2/{path}/manifests/{tag}", self.base_url());
        let body = index_body(manifests);
        let client = Registry::api_client()?;
        let (response, _) = self
            .send_authorized(&client, &format!("repository:{path}:push,pull"), |c| {
                c.put(&url)
                    .header(reqwest::header::CONTENT_TYPE, LIST)
                    .body(body.clone())
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            let said = response.text().await.unwrap_or_default();
            bail!(
                "the registry {} refused the image index {path}:{tag} ({status}): {}",
                self.settings.server,
                said.trim()
            );
        }
        Ok(format!("{}:{tag}", self.name_of(repository)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pushed_manifest_is_read_from_the_last_status_line() {
        assert_eq!(
            pushed_manifest("v1: digest: sha256:465f size: 735"),
            Some(("sha256:465f".into(), 735))
        );
        assert_eq!(pushed_manifest("Pushed"), None);
        assert_eq!(pushed_manifest("v1: digest: md5:x size: 1"), None);
    }

    #[test]
    fn the_index_names_each_platform_by_digest() {
        let body = index_body(&[
            Manifest {
                platform: Platform::Amd64,
                digest: "sha256:aa".into(),
                size: 10,
            },
            Manifest {
                platform: Platform::Arm64,
                digest: "sha256:bb".into(),
                size: 11,
            },
        ]);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["mediaType"], LIST);
        assert_eq!(json["manifests"][1]["digest"], "sha256:bb");
        assert_eq!(json["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(json["manifests"][0]["size"], 10);
    }
}

//! Where the web UI finds the API: `API_URL`, either `http://host:port` or
//! `unix:/path/to/socket` (plain HTTP over a unix socket, where an edge
//! proxy on the same host listens). No TLS: the API is reached inside the
//! stack.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the API listens, as `API_URL` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiUrl {
    /// `http://host:port`: the base URL, without a trailing slash.
    Http(String),
    /// `unix:/path/to/socket`: plain HTTP over a unix socket.
    Unix(PathBuf),
}

/// An `API_URL` that is neither form.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "API_URL {0:?} must be http://host:port or unix:/path/to/socket (the API is reached \
     inside the stack, without TLS)"
)]
pub struct ApiUrlError(String);

impl FromStr for ApiUrl {
    type Err = ApiUrlError;

    fn from_str(url: &str) -> Result<ApiUrl, ApiUrlError> {
        if let Some(path) = url.strip_prefix("unix:")
            && !path.is_empty()
        {
            return Ok(ApiUrl::Unix(PathBuf::from(path)));
        }
        match url.strip_prefix("http://") {
            Some(rest) if !rest.is_empty() => Ok(ApiUrl::Http(url.trim_end_matches('/').into())),
            _ => Err(ApiUrlError(url.to_owned())),
        }
    }
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiUrl::Http(base) => f.write_str(base),
            ApiUrl::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_is_tcp_or_a_unix_socket() {
        assert_eq!(
            "http://api:5000/".parse::<ApiUrl>().unwrap(),
            ApiUrl::Http("http://api:5000".into())
        );
        let socket = "unix:/run/edge/api.sock".parse::<ApiUrl>().unwrap();
        assert_eq!(socket, ApiUrl::Unix("/run/edge/api.sock".into()));
        assert_eq!(socket.to_string(), "unix:/run/edge/api.sock");
        for bad in ["https://api", "api:5000", "unix:", "http://"] {
            let error = bad.parse::<ApiUrl>().unwrap_err().to_string();
            assert!(
                error.contains("http://host:port or unix:/"),
                "{bad}: {error}"
            );
        }
    }
}

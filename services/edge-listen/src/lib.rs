//! The edge's listener syntax, `EDGE_LISTEN`: which sockets the edge
//! listens on and which path goes to which service. Its own crate because
//! two programs read it: the edge, which listens, and the deployer, which
//! learns from the compose file's `EDGE_LISTEN` where each service answers
//! (the URLs `up` prints, the ports the acceptance checks call).
//!
//! ```text
//! NAME=ADDRESS [redirect-https] -> ROUTES      entries separated by ';' or newlines
//! ADDRESS = http://HOST:PORT | https://HOST:PORT | unix:/PATH
//! ROUTES  = SERVICE | /PREFIX=SERVICE,/PREFIX=SERVICE,...
//! ```
//!
//! e.g. `web=http://0.0.0.0:80 -> frontend; api=http://0.0.0.0:5000 -> api;
//! tls=https://0.0.0.0:443 -> /supmit/=api,/docs=api,/=frontend`. The
//! longest matching prefix wins and is not stripped; a bare `SERVICE` is
//! `/=SERVICE`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// One listening socket and its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub address: ListenAddress,
    /// Plain HTTP answered with a redirect to https (except the ACME
    /// challenge path and the edge's own `/.edge/` paths).
    pub redirect_https: bool,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    Http(SocketAddr),
    Https(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddress {
    pub fn kind(&self) -> &'static str {
        match self {
            ListenAddress::Http(_) => "http",
            ListenAddress::Https(_) => "https",
            ListenAddress::Unix(_) => "unix",
        }
    }

    /// The scheme clients used, for `X-Forwarded-Proto`.
    pub fn scheme(&self) -> &'static str {
        match self {
            ListenAddress::Https(_) => "https",
            _ => "http",
        }
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::Http(a) => write!(f, "http://{a}"),
            ListenAddress::Https(a) => write!(f, "https://{a}"),
            ListenAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A path prefix and the service that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub service: String,
}

impl ListenerSpec {
    /// The service a request for `path` goes to: the longest prefix wins.
    pub fn service_for(&self, path: &str) -> Option<&str> {
        self.routes
            .iter()
            .filter(|r| path.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len())
            .map(|r| r.service.as_str())
    }
}

/// A mistake in `EDGE_LISTEN`, naming the entry and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    #[error("entry {index} ({entry:?}): {problem}")]
    Entry {
        index: usize,
        entry: String,
        problem: String,
    },
    #[error("no listener; {LISTEN_SYNTAX}")]
    Empty,
}

pub const LISTEN_SYNTAX: &str = "expected NAME=ADDRESS [redirect-https] -> ROUTES, with ADDRESS \
    http://HOST:PORT, https://HOST:PORT or unix:/PATH and ROUTES a SERVICE or \
    /PREFIX=SERVICE,/PREFIX=SERVICE";

/// Parses `EDGE_LISTEN` (see the module docs).
pub fn parse_listeners(text: &str) -> Result<Vec<ListenerSpec>, ListenError> {
    let mut out: Vec<ListenerSpec> = Vec::new();
    for (i, raw) in text
        .split([';', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let fail = |problem: String| ListenError::Entry {
            index: i + 1,
            entry: raw.to_string(),
            problem,
        };
        let (head, routes) = raw
            .split_once("->")
            .ok_or_else(|| fail(format!("no \"->\" before the routes; {LISTEN_SYNTAX}")))?;
        let (name, rest) = head
            .trim()
            .split_once('=')
            .ok_or_else(|| fail(format!("no NAME= at the start; {LISTEN_SYNTAX}")))?;
        let name = name.trim();
        if !valid_name(name) {
            return Err(fail(format!(
                "the name {name:?} must be letters, digits, '-' or '_'"
            )));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(fail(format!("the name {name:?} is used twice")));
        }
        let mut words = rest.split_whitespace();
        let address = words
            .next()
            .ok_or_else(|| fail(format!("no address; {LISTEN_SYNTAX}")))?;
        let address = parse_address(address).map_err(fail)?;
        let mut redirect_https = false;
        for option in words {
            match option {
                "redirect-https" if matches!(address, ListenAddress::Http(_)) => {
                    redirect_https = true
                }
                "redirect-https" => {
                    return Err(fail(
                        "redirect-https only makes sense on an http:// listener".into(),
                    ));
                }
                other => {
                    return Err(fail(format!(
                        "unknown option {other:?}; the only option is redirect-https"
                    )));
                }
            }
        }
        let any_port =
            matches!(address, ListenAddress::Http(a) | ListenAddress::Https(a) if a.port() == 0);
        if !any_port && out.iter().any(|l| l.address == address) {
            return Err(fail(format!("the address {address} is listed twice")));
        }
        let routes = parse_routes(routes).map_err(fail)?;
        out.push(ListenerSpec {
            name: name.to_string(),
            address,
            redirect_https,
            routes,
        });
    }
    if out.is_empty() {
        return Err(ListenError::Empty);
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_address(text: &str) -> Result<ListenAddress, String> {
    let socket = |rest: &str| -> Result<SocketAddr, String> {
        rest.parse::<SocketAddr>().map_err(|_| {
            format!(
                "{text:?} is not HOST:PORT with a numeric IP (e.g. 0.0.0.0:80, 127.0.0.1:8080, [::]:443)"
            )
        })
    };
    if let Some(rest) = text.strip_prefix("http://") {
        Ok(ListenAddress::Http(socket(rest)?))
    } else if let Some(rest) = text.strip_prefix("https://") {
        Ok(ListenAddress::Https(socket(rest)?))
    } else if let Some(rest) = text.strip_prefix("unix:") {
        if !rest.starts_with('/') {
            return Err(format!("the unix socket path in {text:?} must be absolute"));
        }
        if rest.len() > 100 {
            return Err(format!(
                "the unix socket path in {text:?} is longer than 100 bytes (the kernel's limit is 108)"
            ));
        }
        Ok(ListenAddress::Unix(PathBuf::from(rest)))
    } else {
        Err(format!(
            "the address {text:?} must start with http://, https:// or unix:"
        ))
    }
}

fn parse_routes(text: &str) -> Result<Vec<Route>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("no routes after \"->\"; {LISTEN_SYNTAX}"));
    }
    let mut routes = Vec::new();
    if !text.contains('=') {
        if !valid_name(text) {
            return Err(format!(
                "the service name {text:?} must be letters, digits, '-' or '_'"
            ));
        }
        routes.push(Route {
            prefix: "/".into(),
            service: text.into(),
        });
        return Ok(routes);
    }
    for part in text.split(',').map(str::trim) {
        let (prefix, service) = part
            .split_once('=')
            .ok_or_else(|| format!("the route {part:?} is not /PREFIX=SERVICE"))?;
        let (prefix, service) = (prefix.trim(), service.trim());
        if !prefix.starts_with('/') {
            return Err(format!("the route prefix {prefix:?} must start with '/'"));
        }
        if !valid_name(service) {
            return Err(format!(
                "the service name {service:?} in {part:?} must be letters, digits, '-' or '_'"
            ));
        }
        if routes.iter().any(|r: &Route| r.prefix == prefix) {
            return Err(format!("the prefix {prefix:?} is routed twice"));
        }
        routes.push(Route {
            prefix: prefix.into(),
            service: service.into(),
        });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let l = parse_listeners(
            "web=http://0.0.0.0:8080 redirect-https -> frontend; api=http://0.0.0.0:5000 -> api;\
             internal=unix:/run/edge/api.sock -> api; \
             tls=https://0.0.0.0:443 -> /supmit/=api,/docs=api,/openapi.json=api,/=frontend",
        )
        .unwrap();
        assert_eq!(l.len(), 4);
        assert!(l[0].redirect_https);
        assert_eq!(
            l[2].address,
            ListenAddress::Unix("/run/edge/api.sock".into())
        );
        assert_eq!(l[3].routes.len(), 4);
        assert_eq!(l[3].routes[0].prefix, "/supmit/");
        assert_eq!(l[1].routes[0].prefix, "/");
    }

    #[test]
    fn bad_entries_are_named_with_what_is_expected() {
        let e = parse_listeners("web=http://0.0.0.0:80 -> frontend; api=http://0.0.0.0 -> api")
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 2") && e.contains("HOST:PORT"), "{e}");
        let e = parse_listeners("web=ftp://0.0.0.0:80 -> x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http://, https:// or unix:"), "{e}");
        let e = parse_listeners("web=http://0.0.0.0:80 frontend")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"->\""), "{e}");
        let e = parse_listeners("web=http://0.0.0.0:80 -> docs=api")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must start with '/'"), "{e}");
        let e = parse_listeners("a=unix:/x -> b; a=unix:/y -> b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn the_longest_prefix_picks_the_service() {
        let l = parse_listeners("tls=https://0.0.0.0:443 -> /supmit/=api,/=frontend").unwrap();
        assert_eq!(l[0].service_for("/supmit/api/v1.0/x"), Some("api"));
        assert_eq!(l[0].service_for("/"), Some("frontend"));
        assert_eq!(l[0].service_for("/docs"), Some("frontend"));
    }
}

impl std::fmt::Display for ListenerSpec {
    /// The entry as `EDGE_LISTEN` writes it, so a parsed list can be
    /// changed and written back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.address)?;
        if self.redirect_https {
            f.write_str(" redirect-https")?;
        }
        f.write_str(" -> ")?;
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| format!("{}={}", r.prefix, r.service))
            .collect();
        f.write_str(&routes.join(","))
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn an_entry_written_back_parses_to_itself() {
        let text = "web=http://0.0.0.0:80 redirect-https -> frontend; \
                    tls=https://[::]:443 -> /supmit/=api,/=frontend; in=unix:/run/edge/api.sock -> api";
        let parsed = parse_listeners(text).unwrap();
        let written: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(parse_listeners(&written.join("; ")).unwrap(), parsed);
        assert_eq!(
            written[0],
            "web=http://0.0.0.0:80 redirect-https -> /=frontend"
        );
    }
}

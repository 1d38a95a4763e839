//! Which proxy, if any, a request goes through.
//!
//! As curl reads them: `HTTPS_PROXY` / `https_proxy` for https targets, `HTTP_PROXY` /
//! `http_proxy` for http targets, `ALL_PROXY` / `all_proxy` for both, `NO_PROXY` /
//! `no_proxy` for the hosts that go direct. `--proxy URL` replaces the first three and
//! `--no-proxy LIST` the last. hyper-util's matcher applies curl's `NO_PROXY` rules
//! (domains with their subdomains, IPs and CIDR ranges, `*`), so they are not re-implemented
//! here. Only `http://` proxies are supported: https targets go through a `CONNECT` tunnel,
//! http targets as absolute-form requests.

use http::HeaderValue;
use hyper_util::client::proxy::matcher::Matcher;

/// What `--proxy` and `--no-proxy` say; unset fields fall back to the environment. `Debug`
/// shows the proxy URL without its password.
#[derive(Clone, Default)]
pub struct ProxySettings {
    /// `--proxy URL`: every request goes through it (unless `--no-proxy` matches).
    pub proxy: Option<String>,
    /// `--no-proxy LIST`: hosts that go direct.
    pub no_proxy: Option<String>,
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("proxy", &self.proxy.as_deref().map(redact))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl ProxySettings {
    /// The proxy for http and for https targets and the bypass list, flags first, then the
    /// environment. The AWS clients get the same three.
    pub fn resolved(&self) -> (Option<String>, Option<String>, Option<String>) {
        let env = |names: &[&str]| {
            names
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        };
        let all = self
            .proxy
            .clone()
            .or_else(|| env(&["ALL_PROXY", "all_proxy"]));
        let (http, https) = match &self.proxy {
            Some(proxy) => (Some(proxy.clone()), Some(proxy.clone())),
            None => (
                env(&["HTTP_PROXY", "http_proxy"]).or_else(|| all.clone()),
                env(&["HTTPS_PROXY", "https_proxy"]).or(all),
            ),
        };
        let no_proxy = self
            .no_proxy
            .clone()
            .or_else(|| env(&["NO_PROXY", "no_proxy"]));
        (http, https, no_proxy)
    }

    /// Checks a `--proxy` URL at start: an http URL with a host.
    pub fn validate(&self) -> Result<(), String> {
        let Some(proxy) = &self.proxy else {
            return Ok(());
        };
        let url = url::Url::parse(proxy).map_err(|error| format!("`{proxy}`: {error}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "`{}` uses {}: only http:// proxies are supported",
                redact(proxy),
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{}` has no host", redact(proxy)));
        }
        Ok(())
    }
}

/// A proxy a request goes through. `Debug` shows whether it has credentials, not them.
#[derive(Clone)]
pub struct Proxy {
    /// The proxy's URL scheme (only `http` is supported).
    pub scheme: String,
    /// The proxy's host, for name lookup.
    pub host: String,
    /// The proxy's port (default 80).
    pub port: u16,
    /// `Proxy-Authorization` from credentials in the proxy URL; never logged.
    pub authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl Proxy {
    /// `host:port`: how logs and errors name the proxy (never with credentials).
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The proxy decision for one pipeline, made once at start.
#[derive(Debug, Clone)]
pub struct ProxyRoutes {
    matcher: std::sync::Arc<Matcher>,
}

impl ProxyRoutes {
    /// From the flags and the environment as they are now.
    pub fn new(settings: &ProxySettings) -> Self {
        let (http, https, no_proxy) = settings.resolved();
        let mut builder = Matcher::builder();
        if let Some(http) = http {
            builder = builder.http(http);
        }
        if let Some(https) = https {
            builder = builder.https(https);
        }
        if let Some(no_proxy) = no_proxy {
            builder = builder.no(no_proxy);
        }
        Self {
            matcher: std::sync::Arc::new(builder.build()),
        }
    }

    /// The proxy for `target`, or `None` to go direct.
    pub fn for_target(&self, target: &http::Uri) -> Option<Proxy> {
        let intercept = self.matcher.intercept(target)?;
        let uri = intercept.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let host = uri.host()?.to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Some(Proxy {
            scheme,
            host,
            port,
            authorization: intercept.basic_auth().cloned(),
        })
    }
}

/// A proxy URL with any password replaced, for messages.
pub fn redact(proxy: &str) -> String {
    match url::Url::parse(proxy) {
        Ok(mut url) if url.password().is_some() || !url.username().is_empty() => {
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            url.to_string()
        }
        _ => proxy.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(proxy: &str, no_proxy: Option<&str>) -> ProxyRoutes {
        ProxyRoutes::new(&ProxySettings {
            proxy: Some(proxy.to_string()),
            no_proxy: no_proxy.map(str::to_string),
        })
    }

    fn uri(text: &str) -> http::Uri {
        text.parse().expect("test URI")
    }

    #[test]
    fn the_proxy_flag_routes_http_and_https() {
        let r = routes("http://127.0.0.1:3128", Some(""));
        for target in [
            "https://stream.example.org/x",
            "http://stream.example.org/x",
        ] {
            let proxy = r.for_target(&uri(target)).expect("proxied");
            assert_eq!(proxy.address(), "127.0.0.1:3128");
            assert!(proxy.authorization.is_none());
        }
    }

    #[test]
    fn no_proxy_hosts_and_their_subdomains_go_direct() {
        let r = routes("http://127.0.0.1:3128", Some("example.org,10.0.0.0/8"));
        assert!(r.for_target(&uri("https://stream.example.org/")).is_none());
        assert!(r.for_target(&uri("https://example.org/")).is_none());
        assert!(r.for_target(&uri("http://10.1.2.3/")).is_none());
        assert!(r.for_target(&uri("https://example.com/")).is_some());
    }

    #[test]
    fn credentials_in_the_url_become_basic_authorization_and_stay_out_of_messages() {
        let r = routes("http://user:secret@127.0.0.1:3128", Some(""));
        let proxy = r
            .for_target(&uri("https://stream.example.org/"))
            .expect("proxied");
        let header = proxy.authorization.clone().expect("authorization");
        assert_eq!(header.to_str().ok(), Some("Basic dXNlcjpzZWNyZXQ="));
        assert!(!proxy.address().contains("secret"));
        assert!(!redact("http://user:secret@127.0.0.1:3128").contains("secret"));
        for shown in [
            format!("{proxy:?}"),
            format!(
                "{:?}",
                ProxySettings {
                    proxy: Some("http://user:secret@127.0.0.1:3128".to_string()),
                    no_proxy: None,
                }
            ),
        ] {
            assert!(!shown.contains("secret"), "{shown}");
            assert!(!shown.contains("dXNlcjpzZWNyZXQ="), "{shown}");
        }
    }

    #[test]
    fn only_http_proxies_are_accepted() {
        let settings = |p: &str| ProxySettings {
            proxy: Some(p.to_string()),
            no_proxy: None,
        };
        assert!(settings("http://proxy.example.org:3128").validate().is_ok());
        let error = settings("socks5://u:pw@proxy:1080")
            .validate()
            .expect_err("refused");
        assert!(error.contains("only http:// proxies"), "{error}");
        assert!(!error.contains("pw"), "{error}");
    }
}

//! Outgoing connections to the internet (the ACME CA, DNS provider APIs,
//! the on-demand `ask` URL), direct or through a forward proxy with HTTP
//! `CONNECT`, as `[network]` or the usual `HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY` and `NO_PROXY` variables say. Loopback services (Envoy's
//! admin, etcd) never go through it.
//!
//! hyper-util does the work: its `Matcher` decides per destination, its
//! `Tunnel` opens the `CONNECT` (with `Proxy-Authorization` from the proxy
//! URL's user and password). TLS to the destination runs inside the tunnel,
//! so the proxy sees only the host and port.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

/// `[network]`: how the sidecar reaches the internet.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Forward proxy for everything the sidecar calls out to:
    /// `http://[user:password@]host:port`. Unset: `HTTPS_PROXY`,
    /// `HTTP_PROXY`, `ALL_PROXY` (upper or lower case).
    #[serde(default)]
    pub proxy: Option<String>,
    /// Hosts, domains (with their subdomains) and networks reached without
    /// the proxy, comma-separated (`NO_PROXY`'s syntax). Unset: `NO_PROXY`.
    #[serde(default)]
    pub no_proxy: Option<String>,
}

/// Why `[network] proxy` is refused (the password never shown); a
/// configuration mistake, so permanent.
#[derive(Debug, thiserror::Error)]
pub enum ProxyUrlError {
    #[error("'{shown}' is not a URL: {reason}")]
    NotAUrl { shown: String, reason: String },
    #[error("'{shown}' must be http://[user:password@]host:port (the tunnel to the proxy is plain HTTP CONNECT)")]
    NotHttp { shown: String },
}

impl Network {
    /// Checks `proxy`; the caller names the field.
    pub fn validate(&self) -> Result<(), ProxyUrlError> {
        let Some(proxy) = &self.proxy else { return Ok(()) };
        let shown = redact(proxy);
        let uri: http::Uri = proxy.parse().map_err(|e: http::uri::InvalidUri| ProxyUrlError::NotAUrl {
            shown: shown.clone(),
            reason: e.to_string(),
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ProxyUrlError::NotHttp { shown });
        }
        Ok(())
    }

    fn matcher(&self) -> Matcher {
        let env = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok()).unwrap_or_default();
        let proxy = self.proxy.clone();
        let (https, http) = match proxy {
            Some(proxy) => (proxy.clone(), proxy),
            None => {
                let all = env(&["ALL_PROXY", "all_proxy"]);
                let pick = |names: &[&str]| Some(env(names)).filter(|v| !v.is_empty()).unwrap_or_else(|| all.clone());
                (pick(&["HTTPS_PROXY", "https_proxy"]), pick(&["HTTP_PROXY", "http_proxy"]))
            }
        };
        let no = self.no_proxy.clone().unwrap_or_else(|| env(&["NO_PROXY", "no_proxy"]));
        Matcher::builder().https(https).http(http).no(no).build()
    }
}

/// A proxy URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

static MATCHER: OnceLock<Arc<Matcher>> = OnceLock::new();

/// Sets the egress settings for the process (the first call wins; without
/// one, the environment decides).
pub fn configure(network: &Network) {
    let matcher = Arc::new(network.matcher());
    if MATCHER.set(matcher).is_err() {
        tracing::debug!("egress already configured");
    }
}

fn matcher() -> Arc<Matcher> {
    Arc::clone(MATCHER.get_or_init(|| Arc::new(Network::default().matcher())))
}

/// A connector that goes through the proxy where the settings say, else
/// directly; `connect_timeout` bounds the TCP connection (to the proxy, or
/// to the destination).
pub fn connector(connect_timeout: Duration) -> Egress {
    let mut direct = HttpConnector::new();
    direct.enforce_http(false);
    direct.set_connect_timeout(Some(connect_timeout));
    // A JWS request is small and waits for its answer: Nagle's algorithm
    // would hold its last segment for the peer's delayed ACK (up to 40 ms
    // a request on Linux). reqwest and curl set this too.
    direct.set_nodelay(true);
    Egress { direct, matcher: matcher() }
}

/// What [`connector`] gives: a hyper connector (wrap it in
/// `hyper_rustls::HttpsConnector` for TLS).
#[derive(Clone)]
pub struct Egress {
    direct: HttpConnector,
    matcher: Arc<Matcher>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").finish_non_exhaustive()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a connection through the proxy failed: the proxy named (without its
/// password), then hyper-util's reason.
#[derive(Debug, thiserror::Error)]
#[error("through the proxy {proxy}: {source}{}", hint(source))]
struct ProxyError {
    proxy: String,
    source: BoxError,
}

/// What a refused tunnel usually means.
fn hint(source: &BoxError) -> &'static str {
    let text = source.to_string();
    if text.contains("unsuccessful") || text.contains("auth") {
        " (hint: the proxy refused the CONNECT: check the user and password in [network] proxy or HTTPS_PROXY, and \
         that the proxy allows CONNECT to this host and port)"
    } else {
        ""
    }
}

impl tower_service::Service<http::Uri> for Egress {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: http::Uri) -> Self::Future {
        match self.matcher.intercept(&destination) {
            Some(proxy) => {
                let shown = redact(&proxy.uri().to_string());
                let mut tunnel = Tunnel::new(proxy.uri().clone(), self.direct.clone());
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    tower_service::Service::call(&mut tunnel, destination)
                        .await
                        .map_err(|e| Box::new(ProxyError { proxy: shown, source: Box::new(e) }) as BoxError)
                })
            }
            None => {
                let mut direct = self.direct.clone();
                Box::pin(
                    async move { tower_service::Service::call(&mut direct, destination).await.map_err(Into::into) },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_must_be_a_plain_http_url_and_its_password_is_never_shown() {
        let bad = Network { proxy: Some("socks5://u:secret@proxy:1080".into()), no_proxy: None };
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("must be http://") && !error.contains("secret"), "{error}");
        assert!(Network { proxy: Some("http://u:p@proxy.internal:3128".into()), ..Network::default() }
            .validate()
            .is_ok());
        assert_eq!(redact("http://user:pw@proxy:3128"), "http://***@proxy:3128");
        assert_eq!(redact("http://proxy:3128"), "http://proxy:3128");
    }

    #[test]
    fn no_proxy_destinations_go_direct_and_the_rest_through_the_proxy() {
        let network = Network {
            proxy: Some("http://u:p@proxy.internal:3128".into()),
            no_proxy: Some("internal.example, 10.0.0.0/8".into()),
        };
        let matcher = network.matcher();
        let via = |url: &str| matcher.intercept(&url.parse().unwrap()).map(|i| i.uri().to_string());
        assert_eq!(
            via("https://acme-v02.api.letsencrypt.org/directory").as_deref(),
            Some("http://proxy.internal:3128/")
        );
        assert!(matcher.intercept(&"https://ca.internal.example/dir".parse().unwrap()).is_none());
        assert!(matcher.intercept(&"https://10.1.2.3/dir".parse().unwrap()).is_none());
        let auth = matcher.intercept(&"https://a.test/".parse().unwrap()).and_then(|i| i.basic_auth().cloned());
        assert_eq!(auth.as_ref().and_then(|h| h.to_str().ok()), Some("Basic dTpw"));
    }
}

//! Alternate certificate chains (RFC 8555 §7.4.2, `Link: rel="alternate"`)
//! for `preferred_chain`.
//!
//! instant-acme returns only the default chain. Its pluggable `HttpClient`
//! lets us see every response, so this client records, for each
//! certificate download, the alternate chain URLs the CA announced and the
//! chain itself. An alternate chain is fetched with instant-acme's own signed
//! POST-as-GET (`Account::order(url)`), whose JSON parsing of a PEM body then
//! fails; the chain comes from what this client recorded. No JWS is
//! hand-written here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

const PEM_CHAIN: &str = "application/pem-certificate-chain";
/// Downloads kept at most, so a long-running daemon cannot grow this map.
const MAX_KEPT: usize = 64;

/// What the CA said when a certificate chain was downloaded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Download {
    pub(crate) chain: String,
    pub(crate) alternates: Vec<String>,
}

/// Chain downloads seen by one account's HTTP client, by URL.
#[derive(Debug, Clone, Default)]
pub(crate) struct Downloads(Arc<Mutex<HashMap<String, Download>>>);

impl Downloads {
    /// Takes what was recorded for `url`.
    pub(crate) fn take(&self, url: &str) -> Option<Download> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(url)
    }

    fn put(&self, url: String, download: Download) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEPT {
            map.clear();
        }
        map.insert(url, download);
    }
}

/// Wraps the real HTTP client and records certificate downloads (and the
/// dns-persist-01 challenge fields, `persist_fields`).
pub(crate) struct Recording {
    pub(crate) inner: Box<dyn HttpClient>,
    pub(crate) downloads: Downloads,
    pub(crate) challenges: super::persist_fields::ChallengeFields,
}

impl HttpClient for Recording {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let url = req.uri().to_string();
        let response = self.inner.request(req);
        let downloads = self.downloads.clone();
        let challenges = self.challenges.clone();
        Box::pin(async move {
            let mut rsp = response.await?;
            let content_type =
                rsp.parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let is_chain = content_type.starts_with(PEM_CHAIN);
            let is_json = content_type.starts_with("application/json");
            if is_json && rsp.parts.status.is_success() {
                let body = rsp.body.into_bytes().await.map_err(instant_acme::Error::Other)?;
                challenges.record(&body);
                return Ok(BytesResponse { parts: rsp.parts, body: Box::new(body) });
            }
            if !(is_chain && rsp.parts.status.is_success()) {
                return Ok(rsp);
            }
            let body = rsp.body.into_bytes().await.map_err(instant_acme::Error::Other)?;
            let alternates = rsp
                .parts
                .headers
                .get_all(http::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(alternate_url)
                .collect();
            let chain = String::from_utf8_lossy(&body).into_owned();
            downloads.put(url, Download { chain, alternates });
            Ok(BytesResponse { parts: rsp.parts, body: Box::new(body) })
        })
    }
}

/// The URL of a `Link` value with `rel="alternate"`.
fn alternate_url(link: &str) -> Option<String> {
    let (target, params) = link.trim().split_once(';')?;
    let url = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    let alternate = params.split(';').any(|p| {
        let p = p.trim().replace(' ', "");
        p == "rel=\"alternate\"" || p == "rel=alternate"
    });
    alternate.then(|| url.to_owned())
}

/// The issuer common name of the topmost certificate in a PEM chain: the
/// root it chains to, which `preferred_chain` names (as in lego and certbot).
pub(crate) fn top_issuer(chain_pem: &str) -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let last = rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes()).filter_map(Result::ok).last()?;
    let (_, cert) = X509Certificate::from_der(&last).ok()?;
    let cn = cert.issuer().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alternate_links_only() {
        assert_eq!(alternate_url("<https://ca/cert/1/1>;rel=\"alternate\"").as_deref(), Some("https://ca/cert/1/1"));
        assert_eq!(alternate_url(" <https://ca/c/2> ; rel=\"alternate\"").as_deref(), Some("https://ca/c/2"));
        assert_eq!(alternate_url("<https://ca/dir>;rel=\"index\""), None);
        assert_eq!(alternate_url("https://ca/c/2;rel=\"alternate\""), None);
        assert_eq!(alternate_url("garbage"), None);
    }

    #[test]
    fn top_issuer_is_the_last_certificates_issuer() {
        let bundle = crate::cert::placeholder(&["a.example".to_owned()]).expect("placeholder");
        assert_eq!(top_issuer(&bundle.fullchain_pem).as_deref(), Some("proxy-acme placeholder (not issued yet)"));
        assert_eq!(top_issuer("no pem"), None);
    }
}

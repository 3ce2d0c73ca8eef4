//! Image download: bounded in time, size and redirects, and guarded against
//! server-side request forgery (third parties control these URLs).
//!
//! Every failure is a [`FetchError`] that knows whether retrying can help:
//! 404 never will, a timeout or a 503 might.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use url::Url;

use crate::config::FetchConfig;

/// Why an image could not be downloaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// The URL does not parse.
    #[error("image URL does not parse: {0}")]
    InvalidUrl(String),
    /// Scheme other than http/https (or file when enabled).
    #[error("URL scheme `{0}` is not allowed (http and https only; file:// needs fetch.allow_file_urls)")]
    SchemeNotAllowed(String),
    /// Target is loopback/private/link-local and the config forbids it.
    #[error("URL targets a non-public address {0} (set fetch.allow_private_networks only for local testing)")]
    ForbiddenAddress(String),
    /// The server answered with a non-success status.
    #[error("image server answered HTTP {0}")]
    Status(u16),
    /// Body (declared or received) exceeds `fetch.max_bytes`.
    #[error("image is larger than the {max}-byte limit (fetch.max_bytes): {detail}")]
    TooLarge { max: u64, detail: String },
    /// Content-Type is not an image.
    #[error("response is `{0}`, not an image")]
    NotAnImage(String),
    /// Too many redirects, or a redirect loop.
    #[error("too many redirects (fetch.max_redirects = {0})")]
    TooManyRedirects(usize),
    /// The deadline passed before the whole body arrived.
    #[error("download timed out after {0} ms (fetch.timeout_ms)")]
    Timeout(u64),
    /// Connection-level failure (DNS, refused, reset).
    #[error("cannot reach image server: {0}")]
    Connect(String),
    /// A local file could not be read.
    #[error("cannot read local image file: {0}")]
    File(String),
}

impl FetchError {
    /// Whether the same download may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Status(code) => *code == 408 || *code == 429 || *code >= 500,
            FetchError::Timeout(_) | FetchError::Connect(_) => true,
            _ => false,
        }
    }
}

/// Downloads image bytes according to a [`FetchConfig`].
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    config: FetchConfig,
}

impl Fetcher {
    /// Build a client with the configured limits and address policy.
    pub fn new(config: &FetchConfig) -> Result<Self, FetchError> {
        let allow_private = config.allow_private_networks;
        let max_redirects = config.max_redirects;
        let policy = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects || attempt.previous().contains(attempt.url()) {
                return attempt.error(FetchError::TooManyRedirects(max_redirects));
            }
            // Names are checked by the resolver; literal IPs never reach it.
            match literal_ip_forbidden(attempt.url(), allow_private) {
                Some(ip) => attempt.error(FetchError::ForbiddenAddress(ip.to_string())),
                None => attempt.follow(),
            }
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .redirect(policy)
            .no_proxy()
            .dns_resolver(GuardedResolver { allow_private })
            .user_agent(concat!("adrec/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Connect(format!("cannot build HTTP client: {e}")))?;
        Ok(Self { client, config: config.clone() })
    }

    /// Download the image at `raw_url`, enforcing every limit.
    pub async fn fetch(&self, raw_url: &str) -> Result<Vec<u8>, FetchError> {
        let url = Url::parse(raw_url).map_err(|e| FetchError::InvalidUrl(format!("{raw_url:?}: {e}")))?;
        match url.scheme() {
            "http" | "https" => {}
            "file" if self.config.allow_file_urls => return self.read_file(&url).await,
            other => return Err(FetchError::SchemeNotAllowed(other.to_string())),
        }
        if let Some(ip) = literal_ip_forbidden(&url, self.config.allow_private_networks) {
            return Err(FetchError::ForbiddenAddress(ip.to_string()));
        }
        let mut response = self.client.get(url).send().await.map_err(|e| self.classify(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if let Some(ct) = response.headers().get(reqwest::header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("<non-ASCII content type>").to_ascii_lowercase();
            if !(ct.starts_with("image/") || ct.starts_with("application/octet-stream")) {
                return Err(FetchError::NotAnImage(ct));
            }
        }
        let max = self.config.max_bytes;
        if let Some(len) = response.content_length()
            && len > max
        {
            return Err(FetchError::TooLarge { max, detail: format!("Content-Length is {len}") });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(e))? {
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(FetchError::TooLarge { max, detail: "body kept coming past the limit".into() });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn read_file(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let path = url.to_file_path().map_err(|_| FetchError::InvalidUrl(format!("{url} is not a local path")))?;
        let meta = tokio::fs::metadata(&path).await.map_err(|e| FetchError::File(format!("{}: {e}", path.display())))?;
        if meta.len() > self.config.max_bytes {
            return Err(FetchError::TooLarge { max: self.config.max_bytes, detail: format!("file is {} bytes", meta.len()) });
        }
        tokio::fs::read(&path).await.map_err(|e| FetchError::File(format!("{}: {e}", path.display())))
    }

    fn classify(&self, e: reqwest::Error) -> FetchError {
        // Our own policy errors travel inside reqwest's error chain.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(ours) = s.downcast_ref::<FetchError>() {
                return ours.clone();
            }
            source = s.source();
        }
        if e.is_timeout() {
            FetchError::Timeout(self.config.timeout_ms)
        } else if e.is_redirect() {
            FetchError::TooManyRedirects(self.config.max_redirects)
        } else {
            FetchError::Connect(error_chain(&e))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The URL's host if it is a literal IP the policy forbids.
fn literal_ip_forbidden(url: &Url, allow_private: bool) -> Option<IpAddr> {
    let ip = match url.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    (!allow_private && !is_public(ip)).then_some(ip)
}

/// Whether an address is on the public internet (not loopback, private,
/// link-local incl. cloud metadata, carrier-grade NAT, unique-local,
/// multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Resolves names with the system resolver, then drops addresses the policy
/// forbids, so a public-looking name cannot lead to an internal host.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs.iter().copied().filter(|a| allow_private || is_public(a.ip())).collect();
            if allowed.is_empty() {
                let shown = addrs.first().map(|a| a.ip().to_string()).unwrap_or_else(|| host.clone());
                let err: Box<dyn std::error::Error + Send + Sync> = Box::new(FetchError::ForbiddenAddress(shown));
                return Err(err);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Shared handle used by the pipeline.
pub type SharedFetcher = Arc<Fetcher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_ranges() {
        for ip in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1"] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip} must not be public");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip} must be public");
        }
    }

    #[test]
    fn transient_classification() {
        assert!(FetchError::Status(503).is_transient());
        assert!(FetchError::Status(429).is_transient());
        assert!(!FetchError::Status(404).is_transient());
        assert!(!FetchError::Status(410).is_transient());
        assert!(FetchError::Timeout(1).is_transient());
        assert!(!FetchError::NotAnImage("text/html".into()).is_transient());
    }

    #[tokio::test]
    async fn schemes_and_literal_ips_are_checked_before_any_request() {
        let f = Fetcher::new(&FetchConfig::default()).expect("client");
        assert_eq!(f.fetch("ftp://example.com/a.jpg").await, Err(FetchError::SchemeNotAllowed("ftp".into())));
        assert_eq!(f.fetch("file:///etc/passwd").await, Err(FetchError::SchemeNotAllowed("file".into())));
        assert_eq!(f.fetch("http://127.0.0.1:1/a.jpg").await, Err(FetchError::ForbiddenAddress("127.0.0.1".into())));
        assert_eq!(
            f.fetch("http://169.254.169.254/latest").await,
            Err(FetchError::ForbiddenAddress("169.254.169.254".into()))
        );
        assert!(matches!(f.fetch("http://localhost:1/a.jpg").await, Err(FetchError::ForbiddenAddress(_))));
    }
}

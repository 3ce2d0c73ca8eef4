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
    /// More redirects than `fetch.max_redirects`.
    #[error("too many redirects (fetch.max_redirects = {0})")]
    TooManyRedirects(usize),
    /// A redirect back to a URL already visited in this download.
    #[error("redirect loop: {0} was already visited")]
    RedirectLoop(String),
    /// A redirect to anything but http/https (a remote server must never
    /// send us to `file://` or other schemes, whatever the config says).
    #[error("redirect to a `{0}` URL refused (redirects may only go to http or https)")]
    RedirectScheme(String),
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
    addresses: AddressPolicy,
}

impl Fetcher {
    /// Build a client with the configured limits and address policy.
    pub fn new(config: &FetchConfig) -> Result<Self, FetchError> {
        Self::with_policy(
            config,
            AddressPolicy { allow_private: config.allow_private_networks, exceptions: Arc::from([]) },
        )
    }

    /// A client whose address policy also lets these exact IPs through
    /// (tests only: a first hop on loopback that redirects elsewhere).
    #[cfg(test)]
    fn with_exceptions(config: &FetchConfig, exceptions: &[IpAddr]) -> Result<Self, FetchError> {
        Self::with_policy(
            config,
            AddressPolicy { allow_private: config.allow_private_networks, exceptions: Arc::from(exceptions) },
        )
    }

    fn with_policy(config: &FetchConfig, addresses: AddressPolicy) -> Result<Self, FetchError> {
        let max_redirects = config.max_redirects;
        let redirect_addresses = addresses.clone();
        let policy = redirect::Policy::custom(move |attempt| {
            let next = attempt.url();
            if !matches!(next.scheme(), "http" | "https") {
                let scheme = next.scheme().to_string();
                return attempt.error(FetchError::RedirectScheme(scheme));
            }
            if attempt.previous().contains(next) {
                let url = next.to_string();
                return attempt.error(FetchError::RedirectLoop(url));
            }
            // `previous` holds every URL requested so far, the first included.
            if attempt.previous().len() > max_redirects {
                return attempt.error(FetchError::TooManyRedirects(max_redirects));
            }
            // Names are checked by the resolver; literal IPs never reach it.
            match redirect_addresses.literal_ip_forbidden(next) {
                Some(ip) => attempt.error(FetchError::ForbiddenAddress(ip.to_string())),
                None => attempt.follow(),
            }
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .redirect(policy)
            .no_proxy()
            .dns_resolver(GuardedResolver { addresses: addresses.clone() })
            .user_agent(concat!("adrec/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Connect(format!("cannot build HTTP client: {e}")))?;
        Ok(Self { client, config: config.clone(), addresses })
    }

    /// Download the image at `raw_url`, enforcing every limit.
    pub async fn fetch(&self, raw_url: &str) -> Result<Vec<u8>, FetchError> {
        let url = Url::parse(raw_url).map_err(|e| FetchError::InvalidUrl(format!("{raw_url:?}: {e}")))?;
        match url.scheme() {
            "http" | "https" => {}
            "file" if self.config.allow_file_urls => return self.read_file(&url).await,
            other => return Err(FetchError::SchemeNotAllowed(other.to_string())),
        }
        if let Some(ip) = self.addresses.literal_ip_forbidden(&url) {
            return Err(FetchError::ForbiddenAddress(ip.to_string()));
        }
        let mut response = self.client.get(url).send().await.map_err(|e| self.classify(e))?;
        let status = response.status();
        if status.is_redirection()
            && let Some(scheme) = redirect_scheme(&response)
            && !matches!(scheme.as_str(), "http" | "https")
        {
            // The client does not even offer such a hop to the redirect policy.
            return Err(FetchError::RedirectScheme(scheme));
        }
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
        let meta =
            tokio::fs::metadata(&path).await.map_err(|e| FetchError::File(format!("{}: {e}", path.display())))?;
        if meta.len() > self.config.max_bytes {
            return Err(FetchError::TooLarge {
                max: self.config.max_bytes,
                detail: format!("file is {} bytes", meta.len()),
            });
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
        } else if e.is_builder() {
            // A request that cannot even be built (e.g. a redirect `Location`
            // that is not a usable URL) will never succeed: not transient.
            FetchError::InvalidUrl(error_chain(&e))
        } else {
            FetchError::Connect(error_chain(&e))
        }
    }
}

/// The scheme of a redirect response's `Location`, resolved against its URL.
fn redirect_scheme(response: &reqwest::Response) -> Option<String> {
    let location = response.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
    Some(response.url().join(location).ok()?.scheme().to_string())
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

/// Which target addresses may be connected to.
#[derive(Clone)]
struct AddressPolicy {
    /// `fetch.allow_private_networks`.
    allow_private: bool,
    /// Addresses allowed regardless (empty outside unit tests).
    exceptions: Arc<[IpAddr]>,
}

impl AddressPolicy {
    fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip) || self.exceptions.contains(&ip)
    }

    /// The URL's host if it is a literal IP the policy forbids.
    fn literal_ip_forbidden(&self, url: &Url) -> Option<IpAddr> {
        let ip = match url.host()? {
            url::Host::Ipv4(v4) => IpAddr::V4(v4),
            url::Host::Ipv6(v6) => IpAddr::V6(v6),
            url::Host::Domain(_) => return None,
        };
        (!self.permits(ip)).then_some(ip)
    }
}

/// Whether an address is on the public internet (not loopback, private,
/// link-local incl. cloud metadata, carrier-grade NAT, unique-local,
/// site-local, multicast, unspecified, reserved, benchmarking or
/// documentation). IPv6 forms that carry an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are judged by that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded =
                |hi: u16, lo: u16| IpAddr::V4(std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            // ::a.b.c.d (deprecated IPv4-compatible) and 64:ff9b::a.b.c.d (NAT64).
            if (seg[..6] == [0; 6] && !(v6.is_loopback() || v6.is_unspecified()))
                || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            {
                return is_public(embedded(seg[6], seg[7]));
            }
            // 2002:a.b.c.d::/48 (6to4).
            if seg[0] == 0x2002 {
                return is_public(embedded(seg[1], seg[2]));
            }
            let first = seg[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || (first == 0x2001 && seg[1] == 0x0db8))
        }
    }
}

/// Resolves names with the system resolver, then drops addresses the policy
/// forbids, so a public-looking name cannot lead to an internal host.
struct GuardedResolver {
    addresses: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let addresses = self.addresses.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs.iter().copied().filter(|a| addresses.permits(a.ip())).collect();
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
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip} must not be public");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip} must be public");
        }
    }

    #[test]
    fn reserved_ranges_and_ipv6_forms_of_private_ipv4() {
        for ip in [
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "fec0::1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip} must not be public");
        }
        for ip in ["64:ff9b::8.8.8.8", "2002:808:808::1", "198.20.0.1", "192.0.1.1", "::ffff:1.1.1.1"] {
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
        for url in [
            "http://[::1]:1/",
            "http://10.0.0.1/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]:1/",
            "http://2130706433:1/",
            "http://0.0.0.0:1/",
        ] {
            assert!(matches!(f.fetch(url).await, Err(FetchError::ForbiddenAddress(_))), "{url}");
        }
    }

    /// A server on 127.0.0.2 (the one address the test policy lets through)
    /// that redirects according to the path; counts the requests it gets.
    async fn redirector() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use axum::http::{StatusCode, Uri, header};
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("bind 127.0.0.2");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let port = addr.port();
        let app = axum::Router::new().fallback(move |uri: Uri| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let path = uri.path().to_string();
                let location = match path.as_str() {
                    "/img" => return ([(header::CONTENT_TYPE, "image/png")], "png-bytes").into_response(),
                    "/ok" => "/img".to_string(),
                    "/meta" => "http://169.254.169.254/latest/meta-data/".to_string(),
                    "/ten" => "http://10.0.0.1/a.jpg".to_string(),
                    "/v6" => format!("http://[::1]:{port}/img"),
                    "/ula" => "http://[fd00::1]/a.jpg".to_string(),
                    "/name" => format!("http://localhost:{port}/img"),
                    "/file" => "file:///etc/passwd".to_string(),
                    "/ftp" => "ftp://example.com/a.jpg".to_string(),
                    "/loop-a" => "/loop-b".to_string(),
                    "/loop-b" => "/loop-a".to_string(),
                    p if p.starts_with("/chain/") => {
                        let n: u32 = p["/chain/".len()..].parse().unwrap_or(0);
                        format!("/chain/{}", n + 1)
                    }
                    _ => return StatusCode::NOT_FOUND.into_response(),
                };
                (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, hits)
    }

    #[tokio::test]
    async fn redirects_are_checked_hop_by_hop() {
        let (addr, hits) = redirector().await;
        let config =
            FetchConfig { max_redirects: 3, connect_timeout_ms: 300, timeout_ms: 3_000, ..FetchConfig::default() };
        let f = Fetcher::with_exceptions(&config, &[addr.ip()]).expect("client");
        let base = format!("http://{addr}");
        // The policy lets the first hop through, and a redirect within it works.
        assert_eq!(f.fetch(&format!("{base}/ok")).await, Ok(b"png-bytes".to_vec()));
        // Forbidden targets after a redirect are refused before connecting.
        let forbidden = |r: Result<Vec<u8>, FetchError>| matches!(r, Err(FetchError::ForbiddenAddress(_)));
        assert_eq!(f.fetch(&format!("{base}/meta")).await, Err(FetchError::ForbiddenAddress("169.254.169.254".into())));
        assert_eq!(f.fetch(&format!("{base}/ten")).await, Err(FetchError::ForbiddenAddress("10.0.0.1".into())));
        assert!(forbidden(f.fetch(&format!("{base}/v6")).await));
        assert!(forbidden(f.fetch(&format!("{base}/ula")).await));
        // A name that resolves to loopback (not the excepted 127.0.0.2).
        assert!(forbidden(f.fetch(&format!("{base}/name")).await));
        // Schemes, loops and long chains.
        assert_eq!(f.fetch(&format!("{base}/file")).await, Err(FetchError::RedirectScheme("file".into())));
        assert_eq!(f.fetch(&format!("{base}/ftp")).await, Err(FetchError::RedirectScheme("ftp".into())));
        assert_eq!(f.fetch(&format!("{base}/loop-a")).await, Err(FetchError::RedirectLoop(format!("{base}/loop-a"))));
        assert_eq!(f.fetch(&format!("{base}/chain/0")).await, Err(FetchError::TooManyRedirects(3)));
        // Every request above reached our server only: ok 2, forbidden 5 (first
        // hops), schemes 2, loop 2, chain 4 (the first URL and 3 redirects).
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 15);
        for e in [
            FetchError::RedirectLoop(String::new()),
            FetchError::RedirectScheme("file".into()),
            FetchError::TooManyRedirects(3),
        ] {
            assert!(!e.is_transient(), "{e}");
        }
    }
}

//! The `http` check kind: URL, method, headers (marked sensitive), body,
//! redirects, the TLS options (`tls_verify`, `ca_file`, a client
//! certificate), a proxy and the address family. What the answer must be is
//! `expect:` (`expect.rs`).

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use super::check::{IpFamily, check_literal_family, decode_ip_family};
use super::decode::{self, Ctx};
use super::tls::{TlsClientOptions, decode_tls_client_options};
use super::yaml::Node;

#[derive(Clone, Debug)]
pub struct HttpSpec {
    pub url: Url,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<String>,
    pub follow_redirects: bool,
    /// `tls_verify` (as `verify`), `ca_file`, `client_cert`/`client_key`.
    pub tls: TlsClientOptions,
    /// `proxy: http://host:port`: every request goes through it (CONNECT
    /// for https). Its password, if any, is a secret (masked everywhere).
    pub proxy: Option<Url>,
    /// Honour HTTPS_PROXY / HTTP_PROXY / NO_PROXY; off by default, so a
    /// stray variable never reroutes a probe.
    pub proxy_from_env: bool,
    pub ip_family: IpFamily,
}
const HTTP_KEYS: [&str; 12] = [
    "url",
    "method",
    "headers",
    "body",
    "follow_redirects",
    "tls_verify",
    "ca_file",
    "client_cert",
    "client_key",
    "proxy",
    "proxy_from_env",
    "ip_family",
];

pub(super) fn decode_http(ctx: &mut Ctx, name: &str, node: &Node) -> Option<HttpSpec> {
    let fields = ctx.fields(node, &format!("`http` of check `{name}`"), &HTTP_KEYS)?;
    let url = match fields.get("url") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`url`")?;
            match Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                Ok(url) => {
                    ctx.error(
                        n.pos,
                        format!(
                            "`url` must be http:// or https:// with a host, found scheme `{}`",
                            url.scheme()
                        ),
                    );
                    None
                }
                Err(e) => {
                    // Shown as typed: `ConfigErrors::masked` writes secrets as `${NAME}`.
                    let shown = &text;
                    ctx.error(n.pos, format!("invalid URL `{shown}`: {e}"));
                    None
                }
            }
        }),
        None => {
            ctx.error(fields.pos, "`http` needs a `url`");
            None
        }
    };
    let method = match fields.get("method") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`method`")?.to_ascii_uppercase();
            match text.as_str() {
                "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
                    Method::from_bytes(text.as_bytes()).ok()
                }
                _ => {
                    ctx.error(n.pos, format!("unsupported method `{text}`; expected GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"));
                    None
                }
            }
        }),
        None => Some(Method::GET),
    };
    let headers = match fields.get("headers") {
        Some(n) => decode::field(|| {
            let pairs = ctx.string_map(n, "`headers`")?;
            let mut headers = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                match (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(&v),
                ) {
                    (Ok(k), Ok(mut v)) => {
                        v.set_sensitive(true);
                        headers.push((k, v));
                    }
                    (Err(_), _) => ctx.error(n.pos, format!("invalid header name `{k}`")),
                    (_, Err(_)) => ctx.error(n.pos, format!("invalid value for header `{k}`")),
                }
            }
            Some(headers)
        }),
        None => Some(Vec::new()),
    };
    let body = match fields.get("body") {
        Some(n) => ctx.string(n, "`body`"),
        None => None,
    };
    let follow_redirects = match fields.get("follow_redirects") {
        Some(n) => ctx.bool(n, "`follow_redirects`"),
        None => Some(true),
    };
    let tls_verify = match fields.get("tls_verify") {
        Some(n) => ctx.bool(n, "`tls_verify`"),
        None => Some(true),
    };
    let tls = decode_tls_client_options(ctx, &fields);
    let proxy = match fields.get("proxy") {
        Some(n) => decode_proxy(ctx, n).map(Some),
        None => Some(None),
    };
    let proxy_from_env = match fields.get("proxy_from_env") {
        Some(n) => ctx.bool(n, "`proxy_from_env`"),
        None => Some(false),
    };
    if let (Some(n), Some(Some(_))) = (fields.get("proxy_from_env"), &proxy)
        && proxy_from_env == Some(true)
    {
        ctx.error(
            n.pos,
            "`proxy` and `proxy_from_env: true` exclude each other; keep one",
        );
        return None;
    }
    let ip_family = decode_ip_family(ctx, &fields);
    if let (Some(url), Some(family)) = (&url, ip_family)
        && !check_literal_family(ctx, &fields, family, url.host_str().unwrap_or(""))
    {
        return None;
    }
    let mut tls = tls?;
    tls.verify = tls_verify?;
    // An https check's `ca_file` adds to the system's roots.
    tls.system_roots_too = true;
    Some(HttpSpec {
        url: url?,
        method: method?,
        headers: headers?,
        body,
        follow_redirects: follow_redirects?,
        tls,
        proxy: proxy?,
        proxy_from_env: proxy_from_env?,
        ip_family: ip_family?,
    })
}

/// `proxy: http://[user:password@]host:port`. The password is made a secret,
/// so no output shows it.
fn decode_proxy(ctx: &mut Ctx, node: &Node) -> Option<Url> {
    let text = ctx.string(node, "`proxy`")?;
    let url = match Url::parse(&text) {
        Ok(url) => url,
        Err(e) => {
            ctx.error(node.pos, format!("invalid proxy URL: {e}"));
            return None;
        }
    };
    if url.scheme() != "http" || url.host().is_none() {
        ctx.error(
            node.pos,
            format!(
                "`proxy` must be http://host:port (HTTP CONNECT is used for https), found scheme `{}`",
                url.scheme()
            ),
        );
        return None;
    }
    if let Some(password) = url.password() {
        ctx.secrets.add(password);
        // The decoded form too: that is what a header or a message would carry.
        if let Ok(decoded) = percent_decoded(password) {
            ctx.secrets.add(&decoded);
        }
    }
    Some(url)
}

fn percent_decoded(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
}

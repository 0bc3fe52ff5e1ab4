//! The `http` check kind: URL, method, headers (marked sensitive), body,
//! redirects, certificate verification and `ca_file`. What the answer must
//! be is `expect:` (`expect.rs`).

use std::path::PathBuf;

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use super::ca::decode_ca_file;
use super::decode::{self, Ctx};
use super::yaml::Node;

#[derive(Clone, Debug)]
pub struct HttpSpec {
    pub url: Url,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<String>,
    pub follow_redirects: bool,
    pub tls_verify: bool,
    pub ca_file: Option<PathBuf>,
}
const HTTP_KEYS: [&str; 7] = [
    "url",
    "method",
    "headers",
    "body",
    "follow_redirects",
    "tls_verify",
    "ca_file",
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
    let ca_file = match fields.get("ca_file") {
        Some(n) => decode_ca_file(ctx, n).map(Some),
        None => Some(None),
    };
    Some(HttpSpec {
        url: url?,
        method: method?,
        headers: headers?,
        body,
        follow_redirects: follow_redirects?,
        tls_verify: tls_verify?,
        ca_file: ca_file?,
    })
}

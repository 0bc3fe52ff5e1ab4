//! The `websocket` check kind: open a `ws://` or `wss://` URL (handshake
//! headers, the TLS keys of `http`), optionally send one text message and
//! look for a substring in the first message the server sends, then close.

use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use super::check::optional_string;
use super::check::{IpFamily, check_literal_family, decode_ip_family};
use super::connection::{TLS_OPTION_KEYS, TlsOptions, decode_headers, decode_tls_options};
use super::decode::{self, Ctx};
use super::yaml::Node;
use crate::limits;

#[derive(Clone, Debug)]
pub struct WebsocketSpec {
    pub url: Url,
    /// Sent with the opening handshake (marked sensitive).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A text message sent once the connection is open.
    pub send: Option<String>,
    /// A substring the first message from the server must contain.
    pub expect: Option<String>,
    /// For `wss://`.
    pub tls: TlsOptions,
    /// Which addresses of the URL's host to use.
    pub ip_family: IpFamily,
}

impl WebsocketSpec {
    /// The host and port the URL names (80 or 443 by default).
    pub fn host_port(&self) -> Option<super::HostPort> {
        let host = match self.url.host()? {
            url::Host::Ipv6(ip) => ip.to_string(),
            other => other.to_string(),
        };
        Some(super::HostPort {
            host,
            port: self.url.port_or_known_default()?,
        })
    }

    pub fn is_secure(&self) -> bool {
        self.url.scheme() == "wss"
    }
}

pub(super) fn decode_websocket(ctx: &mut Ctx, name: &str, node: &Node) -> Option<WebsocketSpec> {
    let what = format!("`websocket` of check `{name}`");
    let mut known = vec!["url", "headers", "send", "expect", "ip_family"];
    known.extend(TLS_OPTION_KEYS);
    let fields = ctx.fields(node, &what, &known)?;
    let url = match fields.get("url") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`url`")?;
            match Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "ws" | "wss") && url.host().is_some() => {
                    Some(url)
                }
                Ok(url) => {
                    ctx.error(
                        n.pos,
                        format!(
                            "`url` must be ws:// or wss:// with a host, found scheme `{}`",
                            url.scheme()
                        ),
                    );
                    None
                }
                Err(e) => {
                    ctx.error(n.pos, format!("invalid URL `{text}`: {e}"));
                    None
                }
            }
        }),
        None => {
            ctx.error(fields.pos, format!("{what} needs a `url`"));
            None
        }
    };
    let headers = decode_headers(ctx, &fields, "headers");
    let send = optional_string(ctx, &fields, "send");
    let expect = optional_string(ctx, &fields, "expect");
    if let (Some(Some(text)), Some(n)) = (&send, fields.get("send"))
        && text.len() > limits::WEBSOCKET_MESSAGE_BYTES_MAX
    {
        ctx.error(
            n.pos,
            format!(
                "`send` is longer than {} bytes",
                limits::WEBSOCKET_MESSAGE_BYTES_MAX
            ),
        );
        return None;
    }
    let tls = decode_tls_options(ctx, &fields);
    let ip_family = decode_ip_family(ctx, &fields);
    if let (Some(url), Some(family)) = (&url, ip_family)
        && !check_literal_family(ctx, &fields, family, url.host_str().unwrap_or_default())
    {
        return None;
    }
    Some(WebsocketSpec {
        url: url?,
        headers: headers?,
        send: send?,
        expect: expect?,
        tls: tls?,
        ip_family: ip_family?,
    })
}

//! What the `websocket` and `grpc` kinds share with the `http` kind: the TLS
//! keys (`tls_verify`, `ca_file`, `client_cert`, `client_key`, read as
//! `http` reads them) and header
//! maps (WebSocket handshake headers, gRPC metadata), checked at load.

use std::path::PathBuf;

use reqwest::header::{HeaderName, HeaderValue};

use super::decode::Ctx;
use super::decode::{Fields, field};

/// The TLS keys, named and defaulted as on `http` checks.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// `false` accepts any certificate (still encrypted, not authenticated).
    pub tls_verify: bool,
    /// Trust only these roots (PEM); default: the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM) and its key, for servers that ask
    /// (read and checked to match at load, as on `http` checks).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            tls_verify: true,
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// The keys `decode_tls_options` reads, for a kind's list of known keys.
pub(super) const TLS_OPTION_KEYS: [&str; 4] =
    ["tls_verify", "ca_file", "client_cert", "client_key"];

pub(super) fn decode_tls_options(ctx: &mut Ctx, fields: &Fields) -> Option<TlsOptions> {
    let tls_verify = match fields.get("tls_verify") {
        Some(n) => ctx.bool(n, "`tls_verify`"),
        None => Some(true),
    };
    // `ca_file`, `client_cert` and `client_key` as the http and tls kinds
    // read them.
    let shared = super::tls::decode_tls_client_options(ctx, fields);
    let shared = shared?;
    Some(TlsOptions {
        tls_verify: tls_verify?,
        ca_file: shared.ca_file,
        client_cert: shared.client_cert,
        client_key: shared.client_key,
    })
}

/// `key: {name: value}` as HTTP header names and values, values marked
/// sensitive (they often carry tokens). Absent: none.
pub(super) fn decode_headers(
    ctx: &mut Ctx,
    fields: &Fields,
    key: &str,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let Some(n) = fields.get(key) else {
        return Some(Vec::new());
    };
    field(|| {
        let pairs = ctx.string_map(n, &format!("`{key}`"))?;
        let mut headers = Vec::with_capacity(pairs.len());
        let mut ok = true;
        for (name, value) in pairs {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                (Ok(name), Ok(mut value)) => {
                    value.set_sensitive(true);
                    headers.push((name, value));
                }
                (Err(_), _) => {
                    ctx.error(n.pos, format!("invalid header name `{name}` in `{key}`"));
                    ok = false;
                }
                (_, Err(_)) => {
                    ctx.error(n.pos, format!("invalid value for `{name}` in `{key}`"));
                    ok = false;
                }
            }
        }
        ok.then_some(headers)
    })
}

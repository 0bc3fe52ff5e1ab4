//! The `tls` check kind: a TLS handshake with `host:port` (SNI, optional
//! `ca_file` roots) and how soon the chain may expire before the check is
//! degraded. Also `TlsClientOptions`, the TLS keys every kind that speaks
//! TLS shares (`ca_file`, `client_cert`/`client_key`, `tls_verify`), decoded
//! once here so each kind reads them the same way.

use std::path::PathBuf;
use std::time::Duration;

use super::ca::{decode_ca_file, decode_pem_path, read_client_identity};
use super::check::{
    HostPort, IpFamily, check_literal_family, decode_ip_family, host_port, optional_string,
};
use super::decode::{Ctx, Fields};
use super::yaml::Node;

/// How a check speaks TLS to its target: what it trusts and who it says it
/// is. `probe::tls_client::client_config` builds a rustls config from it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsClientOptions {
    /// Trust only these roots (PEM); default: the system's. A certificate in
    /// it that is the server's own (self-signed, pinned) is trusted as is.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM) and its key, for servers that ask.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `false`: any certificate is accepted (http's `tls_verify: false`).
    pub verify: bool,
    /// With a `ca_file`: trust the system's roots as well (http, as a
    /// browser with an extra CA would), or only `ca_file`'s (tls, which
    /// checks a chain against exactly what it was told).
    pub system_roots_too: bool,
}

impl Default for TlsClientOptions {
    fn default() -> Self {
        TlsClientOptions {
            ca_file: None,
            client_cert: None,
            client_key: None,
            verify: true,
            system_roots_too: false,
        }
    }
}

/// `ca_file`, `client_cert` and `client_key` of a kind (`verify` is left
/// true and `system_roots_too` false: a kind that differs sets them). The files are read here,
/// so a missing, malformed or mismatched one fails validation.
pub(super) fn decode_tls_client_options(
    ctx: &mut Ctx,
    fields: &Fields,
) -> Option<TlsClientOptions> {
    let ca_file = match fields.get("ca_file") {
        Some(n) => decode_ca_file(ctx, n).map(Some),
        None => Some(None),
    };
    let cert = fields
        .get("client_cert")
        .map(|n| (n, decode_pem_path(ctx, n, "client_cert")));
    let key = fields
        .get("client_key")
        .map(|n| (n, decode_pem_path(ctx, n, "client_key")));
    let (client_cert, client_key) = match (cert, key) {
        (None, None) => (None, None),
        (Some((n, _)), None) => {
            ctx.error(n.pos, "`client_cert` needs `client_key` beside it");
            return None;
        }
        (None, Some((n, _))) => {
            ctx.error(n.pos, "`client_key` needs `client_cert` beside it");
            return None;
        }
        (Some((n, cert)), Some((_, key))) => {
            let (cert, key) = (cert?, key?);
            if let Err(message) = read_client_identity(&cert, &key) {
                ctx.error(n.pos, message);
                return None;
            }
            (Some(cert), Some(key))
        }
    };
    Some(TlsClientOptions {
        ca_file: ca_file?,
        client_cert,
        client_key,
        verify: true,
        system_roots_too: false,
    })
}

#[derive(Clone, Debug)]
pub struct TlsSpec {
    pub address: HostPort,
    /// SNI and the name the certificate must be valid for; default: the host.
    pub server_name: String,
    /// `ca_file` (only those roots), the client certificate.
    pub tls: TlsClientOptions,
    /// A chain expiring sooner than this makes the check degraded.
    pub expires_within: Duration,
    pub ip_family: IpFamily,
}
/// Default `expires_within` for `tls` checks: two weeks of warning.
const TLS_EXPIRES_WITHIN_DEFAULT: Duration = Duration::from_secs(14 * 86_400);

pub(super) fn decode_tls(ctx: &mut Ctx, name: &str, node: &Node) -> Option<TlsSpec> {
    let what = format!("`tls` of check `{name}`");
    let fields = ctx.fields(
        node,
        &what,
        &[
            "address",
            "server_name",
            "ca_file",
            "client_cert",
            "client_key",
            "expires_within",
            "ip_family",
        ],
    )?;
    let address = host_port(ctx, &fields, "address", &what);
    let server_name = optional_string(ctx, &fields, "server_name");
    let tls = decode_tls_client_options(ctx, &fields);
    let expires_within = match fields.get("expires_within") {
        Some(n) => ctx.duration(n, "`expires_within`"),
        None => Some(TLS_EXPIRES_WITHIN_DEFAULT),
    };
    let ip_family = decode_ip_family(ctx, &fields);
    if let (Some(address), Some(family)) = (&address, ip_family)
        && !check_literal_family(ctx, &fields, family, &address.host)
    {
        return None;
    }
    let address = address?;
    let server_name = server_name?.unwrap_or_else(|| address.host.clone());
    if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
        ctx.error(
            fields.pos,
            format!("`{server_name}` is not a valid TLS server name"),
        );
        return None;
    }
    let tls = tls?;
    Some(TlsSpec {
        address,
        server_name,
        tls,
        expires_within: expires_within?,
        ip_family: ip_family?,
    })
}

//! The `tls` check kind: a TLS handshake with `host:port` (SNI, optional
//! `ca_file` roots) and how soon the chain may expire before the check is
//! degraded.

use std::path::PathBuf;
use std::time::Duration;

use super::ca::decode_ca_file;
use super::check::{HostPort, host_port, optional_string};
use super::decode::Ctx;
use super::yaml::Node;

#[derive(Clone, Debug)]
pub struct TlsSpec {
    pub address: HostPort,
    /// SNI and the name the certificate must be valid for; default: the host.
    pub server_name: String,
    /// Trust only these roots (PEM); default: the system's.
    pub ca_file: Option<PathBuf>,
    /// A chain expiring sooner than this makes the check degraded.
    pub expires_within: Duration,
}
/// Default `expires_within` for `tls` checks: two weeks of warning.
const TLS_EXPIRES_WITHIN_DEFAULT: Duration = Duration::from_secs(14 * 86_400);

pub(super) fn decode_tls(ctx: &mut Ctx, name: &str, node: &Node) -> Option<TlsSpec> {
    let what = format!("`tls` of check `{name}`");
    let fields = ctx.fields(
        node,
        &what,
        &["address", "server_name", "ca_file", "expires_within"],
    )?;
    let address = host_port(ctx, &fields, "address", &what);
    let server_name = optional_string(ctx, &fields, "server_name");
    let ca_file = match fields.get("ca_file") {
        Some(n) => decode_ca_file(ctx, n).map(Some),
        None => Some(None),
    };
    let expires_within = match fields.get("expires_within") {
        Some(n) => ctx.duration(n, "`expires_within`"),
        None => Some(TLS_EXPIRES_WITHIN_DEFAULT),
    };
    let address = address?;
    let server_name = server_name?.unwrap_or_else(|| address.host.clone());
    if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
        ctx.error(
            fields.pos,
            format!("`{server_name}` is not a valid TLS server name"),
        );
        return None;
    }
    Some(TlsSpec {
        address,
        server_name,
        ca_file: ca_file?,
        expires_within: expires_within?,
    })
}

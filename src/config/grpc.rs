//! The `grpc` check kind: the standard health check
//! (`grpc.health.v1.Health/Check`) of `service` at `host:port`, in
//! plaintext or over TLS (`tls: true`, with the TLS keys of `http`), with
//! metadata headers checked at load.

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use super::check::{HostPort, host_port, optional_string};
use super::check::{IpFamily, check_literal_family, decode_ip_family};
use super::connection::{TLS_OPTION_KEYS, TlsOptions, decode_tls_options};
use super::decode::{self, Ctx};
use super::yaml::Node;

#[derive(Clone, Debug)]
pub struct GrpcSpec {
    pub address: HostPort,
    /// The service asked about; empty: the server as a whole.
    pub service: String,
    /// TLS (`tls: true`), with these options; `None`: plaintext HTTP/2.
    pub tls: Option<TlsOptions>,
    /// Sent with the call (values marked sensitive).
    pub metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    /// Which addresses of `address` to use.
    pub ip_family: IpFamily,
}

pub(super) fn decode_grpc(ctx: &mut Ctx, name: &str, node: &Node) -> Option<GrpcSpec> {
    let what = format!("`grpc` of check `{name}`");
    let mut known = vec!["address", "service", "tls", "metadata", "ip_family"];
    known.extend(TLS_OPTION_KEYS);
    let fields = ctx.fields(node, &what, &known)?;
    let address = host_port(ctx, &fields, "address", &what);
    let ip_family = decode_ip_family(ctx, &fields);
    if let (Some(address), Some(family)) = (&address, ip_family)
        && !check_literal_family(ctx, &fields, family, &address.host)
    {
        return None;
    }
    let service = optional_string(ctx, &fields, "service");
    let use_tls = match fields.get("tls") {
        Some(n) => ctx.bool(n, "`tls`"),
        None => Some(false),
    };
    let options = decode_tls_options(ctx, &fields);
    if use_tls == Some(false) {
        for key in TLS_OPTION_KEYS {
            if let Some(n) = fields.get(key) {
                ctx.error(n.pos, format!("`{key}` applies only with `tls: true`"));
                return None;
            }
        }
    }
    let metadata = match fields.get("metadata") {
        Some(n) => decode::field(|| {
            let pairs = ctx.string_map(n, "`metadata`")?;
            let mut metadata = Vec::with_capacity(pairs.len());
            let mut ok = true;
            for (key, value) in pairs {
                let lower = key.to_ascii_lowercase();
                if lower.starts_with("grpc-") || lower.ends_with("-bin") {
                    ctx.error(
                        n.pos,
                        format!("metadata `{key}` is reserved or binary; use a plain text key"),
                    );
                    ok = false;
                    continue;
                }
                match (
                    AsciiMetadataKey::from_bytes(lower.as_bytes()),
                    AsciiMetadataValue::try_from(value.as_str()),
                ) {
                    (Ok(key), Ok(mut value)) => {
                        value.set_sensitive(true);
                        metadata.push((key, value));
                    }
                    (Err(_), _) => {
                        ctx.error(n.pos, format!("invalid metadata key `{key}`"));
                        ok = false;
                    }
                    (_, Err(_)) => {
                        ctx.error(
                            n.pos,
                            format!("invalid value for metadata `{key}` (printable ASCII only)"),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(metadata)
        }),
        None => Some(Vec::new()),
    };
    let tls = match use_tls? {
        true => Some(options?),
        false => None,
    };
    Some(GrpcSpec {
        address: address?,
        service: service?.unwrap_or_default(),
        tls,
        metadata: metadata?,
        ip_family: ip_family?,
    })
}

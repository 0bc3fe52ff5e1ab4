//! Plain TCP connections for the `tcp` and `tls` kinds: the name resolved
//! and timed, each address tried in turn, failures told in one line.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Phases, round_ms};
use crate::config::{HostPort, IpFamily};

/// Resolves `address` (timing `dns` unless it is an IP literal), keeps the
/// addresses of `family`, and connects to the first that accepts (timing
/// `connect`). The caller bounds the whole with the check's timeout.
pub async fn connect(
    address: &HostPort,
    family: IpFamily,
    phases: &mut Phases,
) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = match address.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, address.port)],
        Err(_) => {
            let started = Instant::now();
            let resolved = tokio::net::lookup_host((address.host.as_str(), address.port)).await;
            phases.dns = Some(round_ms(started.elapsed()));
            match resolved {
                Ok(addrs) => addrs.collect(),
                Err(e) => return Err(format!("DNS lookup of {} failed: {e}", address.host)),
            }
        }
    };
    if addrs.is_empty() {
        return Err(format!(
            "DNS lookup of {} returned no addresses",
            address.host
        ));
    }
    let addrs: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| family.allows(a.ip()))
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "{} has no {} address",
            address.host,
            family_name(family)
        ));
    }
    let started = Instant::now();
    let mut last_error = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                phases.connect = Some(round_ms(started.elapsed()));
                // Probes exchange small messages; do not wait to fill a segment.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_error = Some((addr, e)),
        }
    }
    match last_error {
        Some((addr, e)) => Err(describe_io(&e, &addr.to_string())),
        None => Err(format!("cannot connect to {address}")),
    }
}

/// One line for an I/O error, naming the peer.
pub fn describe_io(error: &std::io::Error, peer: &str) -> String {
    super::failure::io_error(error, peer)
}

/// `IPv4` / `IPv6`, for messages.
pub fn family_name(family: IpFamily) -> &'static str {
    match family {
        IpFamily::Ipv4 => "IPv4",
        IpFamily::Ipv6 => "IPv6",
        IpFamily::Any => "IP",
    }
}

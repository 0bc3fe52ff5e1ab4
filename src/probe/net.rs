//! Plain TCP connections for the `tcp` and `tls` kinds: the name resolved
//! and timed, each address tried in turn, failures told in one line.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Phases, round_ms};
use crate::config::HostPort;

/// Resolves `address` (timing `dns` unless it is an IP literal) and connects
/// to the first address that accepts (timing `connect`). The caller bounds
/// the whole with the check's timeout.
pub async fn connect(address: &HostPort, phases: &mut Phases) -> Result<TcpStream, String> {
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
    use std::io::ErrorKind::*;
    let what = match error.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        ConnectionAborted => "connection aborted",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        UnexpectedEof => "connection closed by peer",
        _ => return format!("{error} ({peer})"),
    };
    format!("{what} ({peer})")
}

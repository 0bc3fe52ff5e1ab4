//! The `icmp` check kind: `count` echo requests `interval` apart, replies
//! matched by sequence number, loss and round-trip times reported.
//!
//! The socket is an unprivileged ICMP datagram socket ("ping socket") where
//! `net.ipv4.ping_group_range` admits the process's group, else a raw
//! socket (root or CAP_NET_RAW); when neither is allowed the error says
//! which is missing. IPv4 and IPv6 alike. The run stops waiting for replies
//! a margin before the check's timeout (`limits::ICMP_RESULT_MARGIN`), so a
//! host that never answers gives `fail` with 100% loss, not a timeout.
//! The reply's TTL (IPv4) or hop limit (IPv6) is read from the IP header
//! (raw IPv4) or from the kernel's control message.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{Outcome, Phases, Report, round_ms};
use crate::config::{Expect, IcmpSpec};
use crate::limits;
use crate::result::IcmpFigures;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// Runs one ICMP check, finishing before `timeout` on its own.
pub async fn run(
    spec: &IcmpSpec,
    expect: &Expect,
    timeout: Duration,
    phases: &mut Phases,
) -> Report {
    let started = Instant::now();
    let margin = limits::ICMP_RESULT_MARGIN.min(timeout / 10);
    let deadline = started + timeout.saturating_sub(margin);
    let target = match resolve(&spec.host, spec.ip_family, phases).await {
        Ok(ip) => ip,
        Err(error) => return Report::error(error, phases.clone()),
    };
    let socket = match EchoSocket::open(target) {
        Ok(socket) => socket,
        Err(error) => return Report::error(error, phases.clone()),
    };
    let pinged = socket.ping(spec, deadline).await;
    let figures = pinged.figures(target, socket.kind);
    let report = |outcome, error: Option<String>, notes: Vec<String>| Report {
        outcome,
        error,
        notes,
        phases: phases.clone(),
        icmp: Some(figures.clone()),
        ..Report::default()
    };
    let mut notes = Vec::new();
    if let Some(error) = &pinged.send_error {
        if pinged.sent == 0 {
            return report(
                Outcome::Error,
                Some(format!("sending echo requests to {target} failed: {error}")),
                notes,
            );
        }
        notes.push(format!("some echo requests could not be sent: {error}"));
    }
    if let Some(error) = &pinged.receive_error {
        notes.push(format!("the network answered: {error}"));
    }
    let (outcome, error, summary) = judge(&figures, expect.packet_loss_below);
    notes.extend(summary);
    report(outcome, error, notes)
}

/// The verdict on what came back (with the reason when it is not ok), and
/// the summary note of a run that had replies.
fn judge(
    figures: &IcmpFigures,
    packet_loss_below: Option<f64>,
) -> (Outcome, Option<String>, Option<String>) {
    let target = &figures.address;
    let summary = format!(
        "{} sent, {} received ({}% loss)",
        figures.sent,
        figures.received,
        percent(figures.loss_percent)
    );
    if figures.received == 0 {
        let error = format!("no reply from {target}: {summary}");
        return (Outcome::Fail, Some(error), None);
    }
    let note = match (figures.rtt_min_ms, figures.rtt_avg_ms, figures.rtt_max_ms) {
        (Some(min), Some(avg), Some(max)) => {
            format!("{summary}, round trip min/avg/max {min:.3}/{avg:.3}/{max:.3} ms")
        }
        _ => summary.clone(),
    };
    match packet_loss_below {
        Some(limit) if figures.loss_percent >= limit => {
            let error = format!(
                "packet loss {}% to {target} is not below {}% ({summary})",
                percent(figures.loss_percent),
                percent(limit)
            );
            (Outcome::Fail, Some(error), Some(note))
        }
        _ => (Outcome::Ok, None, Some(note)),
    }
}

/// A percentage without needless decimals: `100`, `33.3`.
fn percent(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// The address to ping: the host itself, or its first resolved address of
/// `family`.
async fn resolve(
    host: &str,
    family: crate::config::IpFamily,
    phases: &mut Phases,
) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let started = Instant::now();
    let resolved = tokio::net::lookup_host((host, 0)).await;
    phases.dns = Some(round_ms(started.elapsed()));
    let mut addrs = resolved.map_err(|e| format!("DNS lookup of {host} failed: {e}"))?;
    addrs
        .find(|addr| family.allows(addr.ip()))
        .map(|addr| addr.ip())
        .ok_or_else(|| match family {
            crate::config::IpFamily::Any => format!("DNS lookup of {host} returned no addresses"),
            other => format!(
                "DNS lookup of {host} returned no {} address",
                other.as_str()
            ),
        })
}

/// Which kind of socket a run used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// An unprivileged ping socket: the kernel picks the identifier and
    /// hands us only our own replies.
    Datagram,
    /// A raw socket: every ICMP packet arrives; we filter by identifier.
    Raw,
}

impl SocketKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SocketKind::Datagram => "datagram",
            SocketKind::Raw => "raw",
        }
    }
}

struct EchoSocket {
    /// Tokio's datagram socket drives any datagram-like descriptor; ICMP
    /// datagram and raw sockets are read and written as UDP ones are.
    socket: UdpSocket,
    kind: SocketKind,
    target: IpAddr,
    /// Ours on a raw socket; the kernel rewrites it on a datagram one.
    identifier: u16,
}

/// What came of the requests of one run.
struct Pinged {
    sent: u32,
    round_trips: Vec<Duration>,
    hop_limit: Option<u8>,
    send_error: Option<String>,
    /// What the last failed read said (an ICMP error such as "host
    /// unreachable" arrives on the socket as one).
    receive_error: Option<String>,
}

impl Pinged {
    fn figures(&self, target: IpAddr, kind: SocketKind) -> IcmpFigures {
        let received = u32::try_from(self.round_trips.len()).unwrap_or(u32::MAX);
        let loss_percent = if self.sent == 0 {
            100.0
        } else {
            f64::from(self.sent - received.min(self.sent)) * 100.0 / f64::from(self.sent)
        };
        let ms: Vec<f64> = self.round_trips.iter().map(|d| round_ms(*d)).collect();
        let min = ms.iter().copied().reduce(f64::min);
        let max = ms.iter().copied().reduce(f64::max);
        let avg = (!ms.is_empty()).then(|| {
            let mean = ms.iter().sum::<f64>() / ms.len() as f64;
            (mean * 1000.0).round() / 1000.0
        });
        IcmpFigures {
            address: target.to_string(),
            socket: kind.as_str().to_string(),
            sent: self.sent,
            received,
            loss_percent,
            rtt_min_ms: min,
            rtt_avg_ms: avg,
            rtt_max_ms: max,
            reply_hop_limit: self.hop_limit,
        }
    }
}

impl EchoSocket {
    /// A ping socket if allowed, else a raw one; the error says what is missing.
    fn open(target: IpAddr) -> Result<EchoSocket, String> {
        let (family, protocol, version) = match target {
            IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp, "ICMP"),
            IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6, "ICMPv6"),
        };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let denied = |e: Errno| matches!(e, Errno::EACCES | Errno::EPERM);
        let (fd, kind) = match nix::sys::socket::socket(family, SockType::Datagram, flags, protocol)
        {
            Ok(fd) => (fd, SocketKind::Datagram),
            Err(e) if denied(e) => {
                match nix::sys::socket::socket(family, SockType::Raw, flags, protocol) {
                    Ok(fd) => (fd, SocketKind::Raw),
                    Err(e) if denied(e) => return Err(neither_allowed(version)),
                    Err(e) => {
                        return Err(format!("cannot open a raw {version} socket: {}", e.desc()));
                    }
                }
            }
            Err(e) => {
                return Err(format!("cannot open an {version} socket: {}", e.desc()));
            }
        };
        // The reply's TTL or hop limit comes as a control message; without
        // it the result only lacks that figure.
        let _ = match target {
            IpAddr::V4(_) => setsockopt(&fd, sockopt::Ipv4RecvTtl, &true),
            IpAddr::V6(_) => setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true),
        };
        let socket = UdpSocket::from_std(std::net::UdpSocket::from(fd))
            .map_err(|e| format!("cannot watch the {version} socket: {e}"))?;
        Ok(EchoSocket {
            socket,
            kind,
            target,
            identifier: fastrand::u16(..),
        })
    }

    /// Sends the requests on their schedule and collects replies until all
    /// came back or `deadline`.
    async fn ping(&self, spec: &IcmpSpec, deadline: Instant) -> Pinged {
        let count = spec.count.min(limits::ICMP_COUNT_MAX) as usize;
        let payload: Vec<u8> = (0..spec.payload_size).map(|i| i as u8).collect();
        let first = Instant::now();
        let mut sent_at: Vec<Option<Instant>> = vec![None; count];
        let mut answered = vec![false; count];
        let mut pinged = Pinged {
            sent: 0,
            round_trips: Vec::with_capacity(count),
            hop_limit: None,
            send_error: None,
            receive_error: None,
        };
        let mut next = 0usize;
        let mut receive_errors = 0u32;
        let mut buffer = vec![0u8; limits::ICMP_RECEIVE_BYTES_MAX];
        loop {
            if next == count && pinged.round_trips.len() == pinged.sent as usize {
                break;
            }
            let send_at = first + spec.interval.saturating_mul(next as u32);
            tokio::select! {
                _ = tokio::time::sleep_until(send_at), if next < count => {
                    let packet = self.request(next as u16, &payload);
                    match self.send(&packet).await {
                        Ok(()) => {
                            sent_at[next] = Some(Instant::now());
                            pinged.sent += 1;
                        }
                        Err(e) => pinged.send_error = Some(e),
                    }
                    next += 1;
                }
                received = self.receive(&mut buffer) => {
                    let (length, from, hop_limit) = match received {
                        Ok(received) => received,
                        Err(e) => {
                            // An error is read once and cleared; a socket
                            // that keeps failing is not waited on.
                            receive_errors += 1;
                            pinged.receive_error = Some(super::net::describe_io(&e, &self.target.to_string()));
                            if receive_errors > limits::ICMP_COUNT_MAX {
                                break;
                            }
                            continue;
                        }
                    };
                    let Some((sequence, hop_limit)) = self.reply(&buffer[..length], from, hop_limit) else {
                        continue;
                    };
                    let index = usize::from(sequence);
                    if let (Some(Some(at)), Some(seen)) = (sent_at.get(index), answered.get_mut(index))
                        && !*seen
                    {
                        *seen = true;
                        pinged.round_trips.push(at.elapsed());
                        pinged.hop_limit = hop_limit.or(pinged.hop_limit);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        pinged
    }

    /// An echo request: type, code, checksum, identifier, sequence, payload.
    fn request(&self, sequence: u16, payload: &[u8]) -> Vec<u8> {
        let kind = match self.target {
            IpAddr::V4(_) => ECHO_REQUEST_V4,
            IpAddr::V6(_) => ECHO_REQUEST_V6,
        };
        let mut packet = Vec::with_capacity(8 + payload.len());
        packet.extend_from_slice(&[kind, 0, 0, 0]);
        packet.extend_from_slice(&self.identifier.to_be_bytes());
        packet.extend_from_slice(&sequence.to_be_bytes());
        packet.extend_from_slice(payload);
        // The kernel computes the ICMPv6 checksum (it covers a pseudo-header
        // only it knows); the IPv4 one is ours on a raw socket.
        if self.target.is_ipv4() {
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        packet
    }

    async fn send(&self, packet: &[u8]) -> Result<(), String> {
        // ICMP has no ports; the kernel ignores this one.
        let to = SocketAddr::new(self.target, 0);
        match self.socket.send_to(packet, to).await {
            Ok(_) => Ok(()),
            Err(e) => Err(super::net::describe_io(&e, &self.target.to_string())),
        }
    }

    /// One packet: its length, where it came from, and the TTL or hop limit
    /// the kernel told.
    async fn receive(
        &self,
        buffer: &mut [u8],
    ) -> std::io::Result<(usize, Option<IpAddr>, Option<u8>)> {
        let fd = self.socket.as_raw_fd();
        self.socket
            .async_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buffer)];
                let mut control = [0u8; 64];
                let message =
                    recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut control), MsgFlags::empty())
                        .map_err(std::io::Error::from)?;
                let from = message.address.and_then(|addr: SockaddrStorage| {
                    if let Some(v4) = addr.as_sockaddr_in() {
                        Some(IpAddr::V4(v4.ip()))
                    } else {
                        addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                    }
                });
                let mut hop_limit = None;
                if let Ok(messages) = message.cmsgs() {
                    for control in messages {
                        match control {
                            ControlMessageOwned::Ipv4Ttl(ttl)
                            | ControlMessageOwned::Ipv6HopLimit(ttl) => {
                                hop_limit = u8::try_from(ttl).ok();
                            }
                            _ => {}
                        }
                    }
                }
                Ok((message.bytes, from, hop_limit))
            })
            .await
    }

    /// The sequence number (and hop limit) of a packet if it is a reply to
    /// one of our requests.
    fn reply(
        &self,
        packet: &[u8],
        from: Option<IpAddr>,
        hop_limit: Option<u8>,
    ) -> Option<(u16, Option<u8>)> {
        if from.is_some_and(|from| from != self.target) {
            return None;
        }
        let (icmp, hop_limit, reply_type) = match self.target {
            // A raw IPv4 socket hands over the IP header too.
            IpAddr::V4(_) if self.kind == SocketKind::Raw => {
                let header = usize::from(packet.first()? & 0x0f) * 4;
                let ttl = *packet.get(8)?;
                (packet.get(header..)?, Some(ttl), ECHO_REPLY_V4)
            }
            IpAddr::V4(_) => (packet, hop_limit, ECHO_REPLY_V4),
            IpAddr::V6(_) => (packet, hop_limit, ECHO_REPLY_V6),
        };
        if icmp.len() < 8 || icmp[0] != reply_type || icmp[1] != 0 {
            return None;
        }
        let identifier = u16::from_be_bytes([icmp[4], icmp[5]]);
        if self.kind == SocketKind::Raw && identifier != self.identifier {
            return None;
        }
        Some((u16::from_be_bytes([icmp[6], icmp[7]]), hop_limit))
    }
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Neither socket was allowed: say what each needs, with the range in force.
fn neither_allowed(version: &str) -> String {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unreadable".to_string());
    let group = nix::unistd::getegid();
    format!(
        "cannot open an {version} socket: unprivileged ping sockets are not allowed for group {group} \
         (net.ipv4.ping_group_range is \"{range}\"), and raw sockets need root or CAP_NET_RAW"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_of_an_echo_request_verifies() {
        let mut packet = vec![ECHO_REQUEST_V4, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3];
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&packet), 0);
    }

    fn figures(sent: u32, received: u32) -> IcmpFigures {
        let round_trips = vec![Duration::from_micros(50); received as usize];
        Pinged {
            sent,
            round_trips,
            hop_limit: Some(64),
            send_error: None,
            receive_error: None,
        }
        .figures("192.0.2.9".parse().unwrap(), SocketKind::Raw)
    }

    #[test]
    fn one_reply_is_enough_unless_a_loss_limit_is_set() {
        let some = figures(3, 1);
        assert_eq!(judge(&some, None).0, Outcome::Ok);
        assert_eq!(
            judge(&some, Some(50.0)),
            (
                Outcome::Fail,
                Some("packet loss 66.7% to 192.0.2.9 is not below 50% (3 sent, 1 received (66.7% loss))".to_string()),
                Some("3 sent, 1 received (66.7% loss), round trip min/avg/max 0.050/0.050/0.050 ms".to_string()),
            )
        );
        assert_eq!(judge(&figures(4, 3), Some(50.0)).0, Outcome::Ok);
        assert_eq!(
            judge(&figures(3, 0), Some(50.0)).1.as_deref(),
            Some("no reply from 192.0.2.9: 3 sent, 0 received (100% loss)")
        );
    }

    #[test]
    fn percentages_read_plainly() {
        assert_eq!(percent(100.0), "100");
        assert_eq!(percent(100.0 / 3.0), "33.3");
        assert_eq!(percent(0.0), "0");
    }

    #[test]
    fn the_error_without_any_socket_names_both_requirements() {
        let text = neither_allowed("ICMP");
        assert!(text.contains("ping_group_range"), "{text}");
        assert!(text.contains("CAP_NET_RAW"), "{text}");
    }
}

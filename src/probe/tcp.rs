//! The `tcp` check kind: connect; optionally send a line; optionally read the
//! banner (what the server says first) until it contains `expect`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Outcome, Phases, Report, net};
use crate::config::TcpSpec;
use crate::limits;

/// Runs one TCP check. The caller bounds it with the check's timeout.
pub async fn run(spec: &TcpSpec, phases: &mut Phases) -> Report {
    let mut stream = match net::connect(&spec.address, spec.ip_family, phases).await {
        Ok(stream) => stream,
        Err(error) => return Report::error(error, phases.clone()),
    };
    let peer_addr = stream.peer_addr().ok();
    let mut report = exchange(spec, &mut stream, phases).await;
    report.peer = peer_addr;
    report
}

/// The optional send and banner read over a connected stream.
async fn exchange(
    spec: &TcpSpec,
    stream: &mut tokio::net::TcpStream,
    phases: &mut Phases,
) -> Report {
    let peer = spec.address.to_string();
    if let Some(send) = &spec.send
        && let Err(e) = stream.write_all(send.as_bytes()).await
    {
        return Report::error(
            format!("sending failed: {}", net::describe_io(&e, &peer)),
            phases.clone(),
        );
    }
    let Some(expected) = &spec.expect else {
        return Report {
            outcome: Outcome::Ok,
            phases: phases.clone(),
            ..Report::default()
        };
    };
    // Read until the expected text shows up, the peer closes, or the cap.
    let mut banner = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if String::from_utf8_lossy(&banner).contains(expected.as_str()) {
            return Report {
                outcome: Outcome::Ok,
                phases: phases.clone(),
                ..Report::default()
            };
        }
        if banner.len() >= limits::TCP_BANNER_BYTES_MAX {
            break;
        }
        // Before the first byte, wait as long as the check allows. Once the
        // server has spoken, a pause means it said all it will: judge then.
        let read = if banner.is_empty() {
            stream.read(&mut buffer).await
        } else {
            match tokio::time::timeout(limits::TCP_BANNER_IDLE, stream.read(&mut buffer)).await {
                Ok(read) => read,
                Err(_) => break,
            }
        };
        match read {
            Ok(0) => break,
            Ok(n) => {
                let room = limits::TCP_BANNER_BYTES_MAX - banner.len();
                banner.extend_from_slice(&buffer[..n.min(room)]);
            }
            Err(e) => {
                return Report::error(
                    format!("reading the banner failed: {}", net::describe_io(&e, &peer)),
                    phases.clone(),
                );
            }
        }
    }
    let seen = String::from_utf8_lossy(&banner);
    let seen: String = seen.trim().chars().take(80).collect();
    Report {
        outcome: Outcome::Fail,
        phases: phases.clone(),
        error: Some(format!(
            "banner does not contain {expected:?} (got {seen:?})"
        )),
        ..Report::default()
    }
}

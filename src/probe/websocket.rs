//! The `websocket` check kind: connect (TLS for `wss://`), run the opening
//! handshake with the check's headers, optionally send one text message,
//! look for `expect` in the first data message the server sends, and close
//! with the closing handshake.
//!
//! A server that refuses the upgrade, sends the wrong first message or
//! closes before any gives `fail`; a connection that cannot be made gives
//! `error`. Message and frame sizes are capped
//! (`limits::WEBSOCKET_MESSAGE_BYTES_MAX`) and the close is given a short
//! grace, so a server cannot hold a probe.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Outcome, Phases, Report, kind_tls, net, round_ms};
use crate::config::WebsocketSpec;
use crate::limits;

/// Runs one WebSocket check. The caller bounds it with the check's timeout.
pub async fn run(spec: &WebsocketSpec, phases: &mut Phases, user_agent: &str) -> Report {
    let Some(address) = spec.host_port() else {
        return Report::error(format!("`{}` names no host", spec.url), phases.clone());
    };
    let tcp = match net::connect(&address, spec.ip_family, phases).await {
        Ok(stream) => stream,
        Err(error) => return Report::error(error, phases.clone()),
    };
    // The address the run connected to, for the result and /metrics.
    let peer = tcp.peer_addr().ok();
    let mut report = connected(spec, tcp, phases, user_agent).await;
    report.peer = report.peer.or(peer);
    report
}

/// The run, once connected.
async fn connected(
    spec: &WebsocketSpec,
    tcp: tokio::net::TcpStream,
    phases: &mut Phases,
    user_agent: &str,
) -> Report {
    if !spec.is_secure() {
        return exchange(spec, tcp, phases, user_agent).await;
    }
    let (config, seen) = match kind_tls::client_config(&spec.tls, &["http/1.1"]).await {
        Ok(config) => config,
        Err(error) => return Report::error(error, phases.clone()),
    };
    let host = spec.host_port().map(|a| a.host).unwrap_or_default();
    let stream = kind_tls::handshake(tcp, &host, config, phases).await;
    let cert_expiry = kind_tls::leaf_expiry(&seen);
    let mut report = match stream {
        Ok(stream) => exchange(spec, stream, phases, user_agent).await,
        Err(failure) => Report {
            outcome: failure.outcome,
            error: Some(failure.reason),
            phases: phases.clone(),
            ..Report::default()
        },
    };
    report.cert_expiry = cert_expiry;
    report
}

/// The WebSocket part, over a connected (and maybe encrypted) stream.
async fn exchange<S>(
    spec: &WebsocketSpec,
    stream: S,
    phases: &mut Phases,
    user_agent: &str,
) -> Report
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = match spec.url.as_str().into_client_request() {
        Ok(request) => request,
        Err(e) => {
            return Report::error(
                format!("cannot make the opening handshake: {e}"),
                phases.clone(),
            );
        }
    };
    if let Ok(value) = user_agent.parse() {
        request.headers_mut().insert("user-agent", value);
    }
    for (name, value) in &spec.headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits::WEBSOCKET_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(limits::WEBSOCKET_MESSAGE_BYTES_MAX));
    let started = Instant::now();
    let handshake =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await;
    phases.ttfb = Some(round_ms(started.elapsed()));
    let mut socket = match handshake {
        Ok((socket, _response)) => socket,
        Err(WsError::Http(response)) => {
            let status = response.status();
            return Report {
                outcome: Outcome::Fail,
                status: Some(status.as_u16()),
                error: Some(format!(
                    "the server answered {} {} instead of switching to WebSocket",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )),
                phases: phases.clone(),
                ..Report::default()
            };
        }
        Err(e) => {
            return Report::error(
                format!("the WebSocket handshake failed: {}", describe(&e)),
                phases.clone(),
            );
        }
    };
    let report = |outcome, error: Option<String>, phases: &Phases| Report {
        outcome,
        status: Some(101),
        error,
        phases: phases.clone(),
        ..Report::default()
    };

    if let Some(text) = &spec.send
        && let Err(e) = socket.send(Message::text(text.as_str())).await
    {
        return report(
            Outcome::Error,
            Some(format!("sending the message failed: {}", describe(&e))),
            phases,
        );
    }
    let mut verdict = report(Outcome::Ok, None, phases);
    if let Some(expected) = &spec.expect {
        let started = Instant::now();
        let first = first_message(&mut socket).await;
        phases.transfer = Some(round_ms(started.elapsed()));
        verdict = match first {
            Ok(message) if message.contains(expected.as_str()) => report(Outcome::Ok, None, phases),
            Ok(message) => {
                let seen: String = message
                    .trim()
                    .chars()
                    .take(limits::WEBSOCKET_QUOTED_CHARS_MAX)
                    .collect();
                report(
                    Outcome::Fail,
                    Some(format!(
                        "the first message does not contain \"{expected}\" (got \"{seen}\")"
                    )),
                    phases,
                )
            }
            Err((outcome, reason)) => report(outcome, Some(reason), phases),
        };
    }
    if !close(&mut socket).await {
        verdict
            .notes
            .push("the server did not finish the closing handshake".to_string());
    }
    verdict
}

/// The first text or binary message (binary read as UTF-8, lossily),
/// skipping a bounded number of pings and pongs.
async fn first_message<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
) -> Result<String, (Outcome, String)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for _ in 0..=limits::WEBSOCKET_CONTROL_FRAMES_MAX {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_string()),
            Some(Ok(Message::Binary(bytes))) => {
                return Ok(String::from_utf8_lossy(&bytes).into_owned());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!(" (code {}{})", u16::from(f.code), reason(&f.reason)))
                    .unwrap_or_default();
                return Err((
                    Outcome::Fail,
                    format!("the server closed the connection before sending a message{why}"),
                ));
            }
            None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                return Err((
                    Outcome::Fail,
                    "the connection ended before the server sent a message".to_string(),
                ));
            }
            Some(Err(e)) => {
                return Err((
                    Outcome::Error,
                    format!("reading the first message failed: {}", describe(&e)),
                ));
            }
        }
    }
    Err((
        Outcome::Fail,
        format!(
            "the server sent {} control frames and no message",
            limits::WEBSOCKET_CONTROL_FRAMES_MAX + 1
        ),
    ))
}

fn reason(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// The closing handshake, within `WEBSOCKET_CLOSE_GRACE`: send a close and
/// read until the server's close ends the stream. True when it did.
async fn close<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let closing = async {
        if socket.close(None).await.is_err() {
            return false;
        }
        // What the server still sends before its close is dropped; the
        // stream ends after the close frames crossed.
        for _ in 0..=limits::WEBSOCKET_CONTROL_FRAMES_MAX {
            match socket.next().await {
                None | Some(Err(WsError::ConnectionClosed)) => return true,
                Some(Ok(_)) => continue,
                Some(Err(_)) => return false,
            }
        }
        false
    };
    tokio::time::timeout(limits::WEBSOCKET_CLOSE_GRACE, closing)
        .await
        .unwrap_or(false)
}

/// A WebSocket error in plain words.
fn describe(error: &WsError) -> String {
    match error {
        WsError::Io(e) => net::describe_io(e, "the server"),
        WsError::Capacity(_) => format!(
            "a message or frame is larger than {} bytes",
            limits::WEBSOCKET_MESSAGE_BYTES_MAX
        ),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            "the connection was closed".to_string()
        }
        other => other.to_string(),
    }
}

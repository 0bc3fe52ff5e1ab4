//! The `tcp` check kind against real listeners on 127.0.0.1.

mod common;

use common::ConfigDirs;
use lookout::result::{Outcome, ProbeResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A listener that greets with `banner`, then echoes what it reads, once.
async fn greeter(banner: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = socket.write_all(banner.as_bytes()).await;
                let mut buf = [0u8; 256];
                if let Ok(n) = socket.read(&mut buf).await {
                    let _ = socket.write_all(&buf[..n]).await;
                }
                // Hold the connection open a moment, as a real server would.
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            });
        }
    });
    port
}

async fn probe(tcp: &str, extra: &str) -> ProbeResult {
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: t\n    tcp: {tcp}\n    every: 1m\n{extra}"
    ));
    dirs.run_first().await
}

#[tokio::test]
async fn connecting_is_enough_without_expect() {
    let port = greeter("").await;
    let result = probe(&format!("{{ address: \"127.0.0.1:{port}\" }}"), "").await;
    assert_eq!(
        (result.outcome, result.error.as_deref()),
        (Outcome::Ok, None)
    );
    assert!(result.phases_ms.connect.is_some());
}

#[tokio::test]
async fn banner_is_matched() {
    let port = greeter("220 mail.test ESMTP ready\r\n").await;
    let ok = probe(
        &format!("{{ address: \"127.0.0.1:{port}\", expect: ESMTP }}"),
        "",
    )
    .await;
    assert_eq!(ok.outcome, Outcome::Ok, "{ok:?}");
    let wrong = probe(
        &format!("{{ address: \"127.0.0.1:{port}\", expect: \"+OK POP3\" }}"),
        "    timeout: 5s\n",
    )
    .await;
    // The server keeps the connection open after its banner: once it pauses,
    // the probe judges what it said, well before the check's timeout.
    assert_eq!(wrong.outcome, Outcome::Fail, "{wrong:?}");
    assert_eq!(
        wrong.error.as_deref(),
        Some(r#"banner does not contain "+OK POP3" (got "220 mail.test ESMTP ready")"#)
    );
    assert!(wrong.duration_ms < 5_000.0, "{wrong:?}");
}

#[tokio::test]
async fn a_server_that_never_speaks_times_out_waiting_for_the_banner() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // accept, say nothing, keep it open
        }
    });
    let result = probe(
        &format!("{{ address: \"127.0.0.1:{port}\", expect: \"220 \" }}"),
        "    timeout: 500ms\n",
    )
    .await;
    assert_eq!(result.outcome, Outcome::Timeout, "{result:?}");
    assert_eq!(
        result.error.as_deref(),
        Some("timed out after 500ms waiting for the banner")
    );
}

#[tokio::test]
async fn banner_mismatch_when_the_server_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        }
    });
    let result = probe(
        &format!("{{ address: \"127.0.0.1:{port}\", expect: \"220 \" }}"),
        "",
    )
    .await;
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(
        result.error.as_deref(),
        Some(r#"banner does not contain "220 " (got "SSH-2.0-OpenSSH_9.6")"#)
    );
}

#[tokio::test]
async fn send_then_expect_the_reply() {
    let port = greeter("").await;
    let result = probe(
        &format!("{{ address: \"127.0.0.1:{port}\", send: \"PING\\r\\n\", expect: PING }}"),
        "",
    )
    .await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
}

#[tokio::test]
async fn closed_port_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let result = probe(&format!("{{ address: \"127.0.0.1:{port}\" }}"), "").await;
    assert_eq!(result.outcome, Outcome::Error);
    assert_eq!(
        result.error,
        Some(format!("connection refused (127.0.0.1:{port})"))
    );
}

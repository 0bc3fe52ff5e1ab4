//! Secrets never leave, in any form (issue #14, finding 5): one `lookout
//! serve` with secrets from its environment in URL hosts (lowercased,
//! punycode), in userinfo, path and query (percent-encoded, with
//! URL-special characters), in a header and as the webhook's signing key,
//! every check failing so that alerts go out and errors carry the host;
//! then a reload with invalid values, and `lookout validate` on them. Every
//! output is swept for every form of every secret: the log at trace level,
//! the API, `/metrics`, the status page, webhook payloads and email.
//!
//! Everything stays on loopback: hosts that hold a secret have a label
//! longer than 63 octets, which the system resolver refuses without sending
//! a query (`assert_unresolvable`), and the rest point at 127.0.0.1.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::{ConfigDirs, Server, client, lookout_bin, start_target, wait_for};

/// One secret: its variable, its value, and a marker inside the value that
/// survives every transformation but case (ASCII letters and digits), so a
/// partly masked or truncated value is caught too.
struct Secret {
    name: &'static str,
    value: &'static str,
    marker: &'static str,
}

const SECRETS: &[Secret] = &[
    // In a host: lowercased by URL parsing.
    Secret {
        name: "HOST_SECRET",
        value: "Api-Kq7Zt-Host",
        marker: "Kq7Zt",
    },
    // In a host, non-ASCII: shown as punycode.
    Secret {
        name: "UNI_SECRET",
        value: "Bücher-Wx4Jm",
        marker: "Wx4Jm",
    },
    // In userinfo, path and query: percent-encoded, URL-special characters.
    Secret {
        name: "USER_SECRET",
        value: "Us3r Pv8Ln@x",
        marker: "Pv8Ln",
    },
    Secret {
        name: "PASS_SECRET",
        value: "Pa55 Rt2Yb\"^",
        marker: "Rt2Yb",
    },
    Secret {
        name: "PATH_SECRET",
        value: "P4th Hn6Vc&é\"'<>",
        marker: "Hn6Vc",
    },
    Secret {
        name: "QUERY_SECRET",
        value: "Qu3ry Mf5Ds+é'=",
        marker: "Mf5Ds",
    },
    // A DNS name (asked of a resolver on loopback) and a TLS server name.
    Secret {
        name: "DNS_SECRET",
        value: "Dns-Zq3Vk-Name",
        marker: "Zq3Vk",
    },
    Secret {
        name: "SNI_SECRET",
        value: "Sni-Bh5Xr-Name",
        marker: "Bh5Xr",
    },
    Secret {
        name: "HEADER_SECRET",
        value: "Bearer-Gt3Wp-Token",
        marker: "Gt3Wp",
    },
    Secret {
        name: "WEBHOOK_SECRET",
        value: "Whk-Sn8Rf-Secret",
        marker: "Sn8Rf",
    },
    // Invalid values: config errors quote what they refuse.
    Secret {
        name: "BAD_EVERY",
        value: "Ev3ry Jd2Kp",
        marker: "Jd2Kp",
    },
    Secret {
        name: "BAD_METHOD",
        value: "m3thod-Lc9Bv",
        marker: "Lc9Bv",
    },
    Secret {
        name: "BAD_TZ",
        value: "Zone/Tq4Hx-Nowhere",
        marker: "Tq4Hx",
    },
    Secret {
        name: "BAD_URL",
        value: "http://[Url-Yw6Gn",
        marker: "Yw6Gn",
    },
    Secret {
        name: "BAD_TYPE",
        value: "typ3-Ua2Fe",
        marker: "Ua2Fe",
    },
];

/// A label of 60 characters: with the secret it holds, longer than DNS's 63.
const PAD: &str = "pad-pad-pad-pad-pad-pad-pad-pad-pad-pad-pad-pad-pad-pad-padx";

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<(&str, &str)> = SECRETS.iter().map(|s| (s.name, s.value)).collect();
    env.push(("RUST_LOG", "trace"));
    env
}

/// Every host in the test that holds a secret must never cause a DNS query
/// off this machine: a label over 63 octets is refused by the resolver
/// before any packet is sent.
fn assert_unresolvable(url: &str) {
    let mut text = url.to_string();
    for s in SECRETS {
        text = text.replace(&format!("${{{}}}", s.name), s.value);
    }
    let host = url::Url::parse(&text)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| text.split(':').next().unwrap_or("").to_string());
    assert!(
        host.split('.').any(|label| label.len() > 63),
        "{host} could be looked up in DNS"
    );
}

#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

async fn hook(State(hooks): State<Hooks>, headers: HeaderMap, body: Bytes) -> &'static str {
    hooks.0.lock().unwrap().push((headers, body));
    "ok"
}

async fn start_hooks() -> (Hooks, u16) {
    let hooks = Hooks::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(hooks.clone());
    let addr = common::serve_on_loopback(app).await;
    (hooks, addr.port())
}

/// Checks with invalid values from the environment, each quoted by its error.
const BAD_CHECKS: &str = r#"checks:
  - name: bad-every
    http: { url: "http://127.0.0.1:9/" }
    every: "${BAD_EVERY}"
  - name: bad-method
    http: { url: "http://127.0.0.1:9/", method: "${BAD_METHOD}" }
    every: 1s
  - name: bad-tz
    http: { url: "http://127.0.0.1:9/" }
    cron: "*/5 * * * *"
    tz: "${BAD_TZ}"
  - name: bad-url
    http: { url: "${BAD_URL}" }
    every: 1s
  - name: bad-type
    dns: { name: "localhost", type: "${BAD_TYPE}", resolver: "127.0.0.1:9" }
    every: 1s
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_shows_any_form_of_a_secret() {
    let target = start_target().await;
    let (hooks, hook_port) = start_hooks().await;
    let sink = common::smtp::Sink::start(&[]);
    let host_url = format!("http://{PAD}-${{HOST_SECRET}}.invalid/health");
    let uni_url = format!("http://{PAD}-${{UNI_SECRET}}.invalid/");
    let tcp_address = format!("{PAD}-${{HOST_SECRET}}.invalid:80");
    assert_unresolvable(&host_url);
    assert_unresolvable(&uni_url);
    assert_unresolvable(&tcp_address);
    let loopback_url = format!(
        "http://${{USER_SECRET}}:${{PASS_SECRET}}@{}/500/${{PATH_SECRET}}?q=${{QUERY_SECRET}}",
        target.addr
    );
    let alert = "alert: { failures: 1, channels: [hook, mail] }";
    // A UDP port on loopback that nothing answers on.
    let dns_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target_addr = target.addr;
    let dirs = ConfigDirs::new(&format!(
        r#"checks:
  - name: secret-host
    http: {{ url: "{host_url}" }}
    every: 1s
    timeout: 3s
    {alert}
  - name: unicode-host
    http: {{ url: "{uni_url}" }}
    every: 1s
    timeout: 3s
    {alert}
  - name: tcp-host
    tcp: {{ address: "{tcp_address}" }}
    every: 1s
    timeout: 3s
    {alert}
  - name: dns-name
    dns: {{ name: "${{DNS_SECRET}}.invalid", resolver: "127.0.0.1:{dns_port}" }}
    every: 1s
    timeout: 3s
    {alert}
  - name: tls-name
    tls: {{ address: "{target_addr}", server_name: "${{SNI_SECRET}}.invalid" }}
    every: 1s
    timeout: 3s
    {alert}
  - name: loopback
    http:
      url: "{loopback_url}"
      headers: {{ X-Api-Key: "${{HEADER_SECRET}}" }}
    every: 1s
    timeout: 3s
    {alert}
"#
    ));
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            r#"channels:
  hook:
    webhook: {{ url: "http://127.0.0.1:{hook_port}/hook", secret: "${{WEBHOOK_SECRET}}" }}
  mail:
    email: {{ smtp: "{}", from: "Lookout <lookout@example.com>", to: [oncall@example.com] }}
"#,
            sink.url()
        ),
    )
    .unwrap();
    let names = [
        "secret-host",
        "unicode-host",
        "tcp-host",
        "dns-name",
        "tls-name",
        "loopback",
    ];

    let server = Server::start_with_env(&dirs, &env());
    let base = server.base.clone();
    let http = client();

    // Every check goes down and alerts both channels.
    let alerted = tokio::time::timeout(
        Duration::from_secs(61),
        wait_for("an alert per check", Duration::from_secs(60), || async {
            let payloads: Vec<String> = hooks
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|(_, b)| String::from_utf8_lossy(b).to_string())
                .collect();
            let mails = sink.messages();
            let all = names.iter().all(|n| {
                let quoted = format!("\"check\":\"{n}\"");
                payloads.iter().any(|p| p.contains(&quoted))
            });
            (all && mails.len() >= names.len()).then_some(())
        }),
    )
    .await;
    assert!(alerted.is_ok(), "no alerts:\n{}", server.log_text());

    // A reload with invalid values: refused, the errors naming ${NAME}.
    std::fs::write(dirs.checks().join("bad.yaml"), BAD_CHECKS).unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(31),
        wait_for("the refused reload", Duration::from_secs(30), || async {
            server
                .log_text()
                .contains("still running the previous config")
                .then_some(())
        }),
    )
    .await;
    assert!(refused.is_ok(), "no reload error:\n{}", server.log_text());

    let mut outputs: Vec<(String, String)> = Vec::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let response = http.get(&url).send().await.unwrap();
            let text = response.text().await.unwrap();
            (path, text)
        }
    };
    for path in [
        "/api/v1/checks",
        "/api/v1/status",
        "/api/v1/alerts",
        "/api/v1/alerts?state=delivered",
        "/api/v1/probes",
        "/metrics",
        "/",
        "/health",
    ] {
        outputs.push(get(path.to_string()).await);
    }
    for name in names {
        for path in [
            format!("/api/v1/checks/{name}/results"),
            format!("/api/v1/checks/{name}/events"),
            format!("/api/v1/status/{name}"),
            format!("/checks/{name}"),
        ] {
            outputs.push(get(path).await);
        }
    }
    // The outputs say what happened, masked: the host in the error, the
    // target with its secrets replaced.
    let checks = &outputs[0].1;
    assert!(checks.contains("****.invalid"), "{checks}");
    let results = outputs
        .iter()
        .find(|(p, _)| p == "/api/v1/checks/secret-host/results")
        .unwrap();
    assert!(
        results.1.contains("DNS lookup of pad-") && results.1.contains("-****.invalid"),
        "{}",
        results.1
    );
    for (headers, body) in hooks.0.lock().unwrap().iter() {
        outputs.push((
            "webhook payload".into(),
            String::from_utf8_lossy(body).into(),
        ));
        let shown: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k.as_str() != "x-lookout-signature")
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        outputs.push(("webhook headers".into(), shown.join("\n")));
    }
    for (raw, meta) in sink.messages() {
        outputs.push(("email (decoded)".into(), meta.to_string()));
        // Only the headers of the raw message: a base64 body is random text.
        let head = raw.split("\r\n\r\n").next().unwrap_or(&raw).to_string();
        outputs.push(("email headers".into(), head));
    }

    // `lookout validate` on the same invalid values.
    let bad = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bad.path().join("checks")).unwrap();
    std::fs::write(bad.path().join("checks/bad.yaml"), BAD_CHECKS).unwrap();
    let validate = Command::new(lookout_bin())
        .arg("validate")
        .arg("--checks")
        .arg(bad.path().join("checks"))
        .arg("--alerts")
        .arg(bad.path().join("alerts"))
        .envs(env())
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(1));
    let validate_text = format!(
        "{}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    for name in ["BAD_EVERY", "BAD_METHOD", "BAD_TZ", "BAD_URL", "BAD_TYPE"] {
        assert!(
            validate_text.contains(&format!("${{{name}}}")),
            "validate names ${{{name}}}:\n{validate_text}"
        );
    }
    outputs.push(("lookout validate".into(), validate_text));

    let log = server.terminate_and_log();
    for name in ["BAD_EVERY", "BAD_METHOD", "BAD_TZ", "BAD_URL", "BAD_TYPE"] {
        assert!(
            log.contains(&format!("${{{name}}}")),
            "the reload error names ${{{name}}}"
        );
    }
    assert!(log.contains(" TRACE "), "the log is at trace level");
    outputs.push(("log (RUST_LOG=trace)".into(), log));

    let mut leaks = Vec::new();
    for (output, text) in &outputs {
        leaks.extend(leaks_in(text).into_iter().map(|l| format!("{output}: {l}")));
    }
    assert!(
        leaks.is_empty(),
        "secrets leaked:\n{}",
        leaks
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every form of every secret found in `text`, described with its context.
/// The text is searched as it is and decoded every way an output may have
/// encoded it (percent-encoding, `+` for space, HTML and JSON escapes),
/// in lowercase, for each secret, its punycode, and its marker.
fn leaks_in(text: &str) -> Vec<String> {
    let json = json_unescape(text);
    let html = html_unescape(text);
    let variants = [
        percent_decode(text),
        percent_decode(&text.replace('+', " ")),
        json.clone(),
        percent_decode(&json),
        html.clone(),
        percent_decode(&html),
        text.to_string(),
    ];
    let mut found = Vec::new();
    for variant in variants {
        let lower = variant.to_lowercase();
        for s in SECRETS {
            let mut needles = vec![s.value.to_lowercase(), s.marker.to_lowercase()];
            let ascii = url::quirks::domain_to_ascii(s.value);
            if !ascii.is_empty() {
                needles.push(ascii.to_lowercase());
            }
            for needle in needles {
                if let Some(i) = lower.find(&needle) {
                    let context: String = lower[..i]
                        .chars()
                        .rev()
                        .take(60)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .chain(lower[i..].chars().take(needle.chars().count() + 60))
                        .collect();
                    let leak = format!("{} as `{needle}` in …{context}…", s.name);
                    if !found.contains(&leak) {
                        found.push(leak);
                    }
                }
            }
        }
    }
    found
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(decoded) => out.push(decoded),
                    None => out.push_str(&hex),
                }
            }
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn html_unescape(text: &str) -> String {
    let mut out = text
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#34;", "\"");
    out = out.replace("&amp;", "&");
    out
}

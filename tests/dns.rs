//! The DNS probe against a real authoritative server on 127.0.0.1 (UDP and
//! TCP, hickory-server's in-memory zone): every record type with its answers
//! note, wrong expectations, NXDOMAIN, empty types, a refused query, a
//! truncated UDP answer retried over TCP, and a resolver that never answers.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::ConfigDirs;
use hickory_server::Server;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use lookout::result::{Outcome, ProbeResult};

/// Longer than a UDP answer may be (the resolver offers 1232 bytes with
/// EDNS), so the `big` TXT record only arrives over TCP.
const BIG_TXT_CHARS: usize = 2000;

fn zone_text() -> String {
    // TXT character-strings hold at most 255 bytes: split the big one.
    let chunk = "x".repeat(200);
    let big: Vec<String> = (0..BIG_TXT_CHARS / 200)
        .map(|_| format!("\"{chunk}\""))
        .collect();
    format!(
        "$ORIGIN example.test.
$TTL 60
@     IN SOA   ns1.example.test. admin.example.test. 1 3600 600 86400 60
@     IN NS    ns1.example.test.
@     IN MX    10 mail.example.test.
www   IN A     192.0.2.10
www   IN A     192.0.2.11
www   IN AAAA  2001:db8::10
txt   IN TXT   \"v=spf1 -all\"
alias IN CNAME www.example.test.
big   IN TXT   {}
",
        big.join(" ")
    )
}

/// Starts the authoritative server for `example.test.` on 127.0.0.1, UDP and
/// TCP on the same port, in the current runtime; returns its address.
async fn start_dns_server() -> SocketAddr {
    let origin = Name::from_str("example.test.").unwrap();
    let (origin, records) = Parser::new(zone_text(), None, Some(origin))
        .parse()
        .unwrap();
    let zone = InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::new(
        origin.clone(),
        records,
        ZoneType::Primary,
        AxfrPolicy::Deny,
    )
    .unwrap();
    let mut catalog = Catalog::new();
    let handler: Arc<dyn ZoneHandler> = Arc::new(zone);
    catalog.upsert(LowerName::new(&origin), vec![handler]);
    let mut server = Server::new(catalog);

    // UDP on any free port, then TCP on the same one (retry if it is taken).
    let (udp, tcp) = loop {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 16);
    tokio::spawn(async move {
        let _ = server.block_until_done().await;
    });
    addr
}

/// Runs one dns check, `dns: { FIELDS, resolver: "ADDR" }`, with `timeout`.
async fn probe_with(resolver: SocketAddr, fields: &str, timeout: &str) -> ProbeResult {
    let yaml = format!(
        "checks:\n  - name: t\n    dns: {{ {fields}, resolver: \"{resolver}\" }}\n    every: 1m\n    timeout: {timeout}\n"
    );
    let dirs = ConfigDirs::new(&yaml);
    dirs.run_first().await
}

async fn probe(resolver: SocketAddr, fields: &str) -> ProbeResult {
    probe_with(resolver, fields, "3s").await
}

fn reason(result: &ProbeResult) -> &str {
    result.error.as_deref().unwrap_or("")
}

fn assert_ok(result: &ProbeResult, answers: &str) {
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    assert_eq!(result.error, None, "{result:?}");
    assert_eq!(
        result.notes,
        vec![format!("answers: {answers}")],
        "{result:?}"
    );
    assert!(result.phases_ms.dns.is_some(), "{result:?}");
}

#[tokio::test]
async fn a_records_pass_with_every_expected_address() {
    let server = start_dns_server().await;
    let result = probe(
        server,
        "name: www.example.test, type: A, expect: [192.0.2.10, 192.0.2.11]",
    )
    .await;
    assert_ok(&result, "192.0.2.10, 192.0.2.11");
    assert!(result.phases_ms.connect.is_none(), "{result:?}");
}

#[tokio::test]
async fn aaaa_record_passes() {
    let server = start_dns_server().await;
    let result = probe(
        server,
        "name: www.example.test, type: AAAA, expect: [\"2001:db8::10\"]",
    )
    .await;
    assert_ok(&result, "2001:db8::10");
}

#[tokio::test]
async fn cname_passes_without_the_trailing_dot_and_case() {
    let server = start_dns_server().await;
    let result = probe(
        server,
        "name: alias.example.test, type: CNAME, expect: [WWW.Example.Test.]",
    )
    .await;
    assert_ok(&result, "www.example.test");
}

#[tokio::test]
async fn mx_passes_with_or_without_the_preference() {
    let server = start_dns_server().await;
    let result = probe(
        server,
        "name: example.test, type: MX, expect: [\"10 mail.example.test\"]",
    )
    .await;
    assert_ok(&result, "10 mail.example.test");
    let result = probe(
        server,
        "name: example.test, type: MX, expect: [mail.example.test.]",
    )
    .await;
    assert_ok(&result, "10 mail.example.test");
}

#[tokio::test]
async fn txt_passes() {
    let server = start_dns_server().await;
    let result = probe(
        server,
        "name: txt.example.test, type: TXT, expect: [\"v=spf1 -all\"]",
    )
    .await;
    assert_ok(&result, "v=spf1 -all");
}

#[tokio::test]
async fn ns_passes() {
    let server = start_dns_server().await;
    let result = probe(
        server,
        "name: example.test, type: NS, expect: [ns1.example.test]",
    )
    .await;
    assert_ok(&result, "ns1.example.test");
}

#[tokio::test]
async fn no_expectation_passes_on_any_answer() {
    let server = start_dns_server().await;
    let result = probe(server, "name: www.example.test, type: A").await;
    assert_ok(&result, "192.0.2.10, 192.0.2.11");
}

#[tokio::test]
async fn an_a_query_through_a_cname_answers_the_addresses() {
    let server = start_dns_server().await;
    let result = probe(
        server,
        "name: alias.example.test, type: A, expect: [192.0.2.11]",
    )
    .await;
    assert_ok(&result, "192.0.2.10, 192.0.2.11");
}

#[tokio::test]
async fn a_wrong_expectation_fails_naming_what_is_missing() {
    let server = start_dns_server().await;
    let result = probe(
        server,
        "name: www.example.test, type: A, expect: [192.0.2.10, 5.6.7.8]",
    )
    .await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(
        reason(&result),
        "answer lacks 5.6.7.8 (got 192.0.2.10, 192.0.2.11)"
    );
    assert_eq!(result.notes, vec!["answers: 192.0.2.10, 192.0.2.11"]);
    assert!(result.phases_ms.dns.is_some(), "{result:?}");

    let result = probe(
        server,
        "name: example.test, type: MX, expect: [\"20 mail.example.test\"]",
    )
    .await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(
        reason(&result),
        "answer lacks 20 mail.example.test (got 10 mail.example.test)"
    );
}

#[tokio::test]
async fn a_missing_name_fails_with_nxdomain() {
    let server = start_dns_server().await;
    let result = probe(server, "name: x.example.test, type: A").await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(reason(&result), "no such name: x.example.test (NXDOMAIN)");
    assert!(result.notes.is_empty(), "{result:?}");
    assert!(result.phases_ms.dns.is_some(), "{result:?}");
}

#[tokio::test]
async fn a_name_without_records_of_the_type_fails() {
    let server = start_dns_server().await;
    let result = probe(server, "name: txt.example.test, type: AAAA").await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(reason(&result), "no AAAA records for txt.example.test");
    let result = probe(server, "name: www.example.test, type: MX").await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(reason(&result), "no MX records for www.example.test");
}

#[tokio::test]
async fn a_refused_query_is_an_error() {
    // The server is authoritative for example.test only and refuses the rest.
    let server = start_dns_server().await;
    let result = probe(server, "name: www.other.test, type: A").await;
    assert_eq!(result.outcome, Outcome::Error, "{result:?}");
    assert_eq!(
        reason(&result),
        format!("DNS query failed: {server} answered REFUSED")
    );
}

#[tokio::test]
async fn a_truncated_udp_answer_is_retried_over_tcp() {
    let server = start_dns_server().await;
    let full = "x".repeat(BIG_TXT_CHARS);
    let result = probe(
        server,
        &format!("name: big.example.test, type: TXT, expect: [\"{full}\"]"),
    )
    .await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    // The note is bounded: the answer is cut, not repeated whole.
    assert_eq!(result.notes.len(), 1, "{result:?}");
    let note = &result.notes[0];
    assert!(
        note.starts_with("answers: xxxx") && note.ends_with('…'),
        "{note}"
    );
    assert!(note.chars().count() < 300, "{note}");
}

#[tokio::test]
async fn a_resolver_that_never_answers_times_out() {
    // Nothing listens on this port. The resolver's UDP socket is not
    // connected, so no ICMP "port unreachable" reaches it: the query is just
    // never answered. The check's timeout (1s) is shorter than the resolver's
    // own (5s), so the check's timeout ends the run: `timeout`, not `error`
    // (the `error` a resolver timeout gives is covered by the unit tests).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = SocketAddr::from(([127, 0, 0, 1], port));
    let started = std::time::Instant::now();
    let result = probe_with(dead, "name: www.example.test, type: A", "1s").await;
    assert_eq!(result.outcome, Outcome::Timeout, "{result:?}");
    assert!(
        reason(&result).starts_with("timed out after 1s"),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn the_result_names_the_resolver_asked_and_its_family() {
    let resolver = start_dns_server().await;
    let result = probe(resolver, "name: www.example.test, ip_family: ipv4").await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    assert_eq!(result.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(result.ip_family.as_deref(), Some("ipv4"));
}

#[test]
fn an_ip_family_that_cannot_reach_the_resolver_is_refused_at_load() {
    let dirs = ConfigDirs::new(
        "checks:\n  - name: t\n    every: 1m\n    dns: { name: a.test, resolver: \"127.0.0.1:53\", ip_family: ipv6 }\n",
    );
    let errors = lookout::config::load(&dirs.checks(), &dirs.alerts()).unwrap_err();
    let text: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e.ends_with("`ip_family: ipv6` cannot reach the address 127.0.0.1")),
        "{text:?}"
    );
}

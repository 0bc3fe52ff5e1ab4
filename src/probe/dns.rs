//! The `dns` check kind: ask one name server (`resolver: ip:port`, over UDP
//! with TCP for truncated answers) or the system's configured ones for the
//! records of one type at one name, and check that every `expect`ed value is
//! in the answer. The name is always queried as written (fully qualified: no
//! search domains, no hosts file), and each run builds a fresh resolver with
//! no cache and one attempt, so the result is the server's live answer. The
//! answers are reported in a note (`answers: 192.0.2.10, 192.0.2.11`); a
//! missing expected value, a name that does not exist (NXDOMAIN) or a name
//! without records of the type gives `fail`; a server that fails (SERVFAIL,
//! REFUSED), cannot be reached or does not answer gives `error`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::time::Instant;

use super::{Outcome, Phases, Report, net, round_ms};
use crate::config::{DnsRecordType, DnsSpec, IpFamily};
use crate::limits;
use crate::schedule::format_duration;

/// Runs one DNS check. The caller bounds it with the check's timeout.
pub async fn run(spec: &DnsSpec, phases: &mut Phases) -> Report {
    run_with_timeout(spec, phases, limits::DNS_QUERY_TIMEOUT).await
}

async fn run_with_timeout(spec: &DnsSpec, phases: &mut Phases, timeout: Duration) -> Report {
    let shown = display_name(&spec.name);
    let server = match spec.resolver {
        Some(addr) => addr.to_string(),
        None => "the system resolver".to_string(),
    };
    let mut name = match Name::from_str_relaxed(spec.name.trim()) {
        Ok(name) => name,
        Err(e) => {
            return Report::error(
                format!("DNS query failed: {shown:?} is not a valid domain name: {e}"),
                phases.clone(),
            );
        }
    };
    // Exactly the name configured: no search domains, whatever ndots says.
    name.set_fqdn(true);
    let resolver = match build_resolver(spec.resolver, spec.ip_family, timeout) {
        Ok(resolver) => resolver,
        Err(e) => {
            return Report::error(
                format!("DNS query failed: cannot set up a resolver for {server}: {e}"),
                phases.clone(),
            );
        }
    };
    let record_type = record_type(spec.record_type);
    let started = Instant::now();
    let lookup = resolver.lookup(name, record_type).await;
    phases.dns = Some(round_ms(started.elapsed()));
    let lookup = match lookup {
        Ok(lookup) => lookup,
        Err(error) => return judge_error(&error, spec, &shown, &server, timeout, phases),
    };
    let mut answers: Vec<Answer> = lookup
        .answers()
        .iter()
        .filter_map(|record| Answer::from_rdata(&record.data, spec.record_type))
        .collect();
    answers.sort();
    answers.dedup();
    if answers.is_empty() {
        return fail(
            format!("no {} records for {shown}", spec.record_type.as_str()),
            phases,
            Vec::new(),
        );
    }
    let rendered: Vec<String> = answers.iter().map(Answer::render).collect();
    let notes = vec![format!("answers: {}", summarize(&rendered))];
    let missing: Vec<&str> = spec
        .expect
        .iter()
        .map(|expected| expected.trim())
        .filter(|expected| !answers.iter().any(|answer| answer.matches(expected)))
        .collect();
    if !missing.is_empty() {
        return fail(
            format!(
                "answer lacks {} (got {})",
                missing.join(", "),
                summarize(&rendered)
            ),
            phases,
            notes,
        );
    }
    Report {
        outcome: Outcome::Ok,
        phases: phases.clone(),
        notes,
        // The server asked, when it is one we know (an explicit resolver).
        peer: spec.resolver,
        ..Report::default()
    }
}

/// A resolver asking only `server` (UDP, then TCP when the answer is
/// truncated), or the system's name servers (of `family` only, unless
/// `any`); no cache, no hosts file, one attempt bounded by `timeout`.
fn build_resolver(
    server: Option<SocketAddr>,
    family: IpFamily,
    timeout: Duration,
) -> Result<TokioResolver, NetError> {
    let mut builder = match server {
        Some(addr) => {
            let mut name_server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut name_server.connections {
                connection.port = addr.port();
            }
            let config = ResolverConfig::from_name_servers(vec![name_server]);
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None if family == IpFamily::Any => TokioResolver::builder_tokio()?,
        None => {
            let (system, _options) = hickory_resolver::system_conf::read_system_conf()?;
            let servers: Vec<NameServerConfig> = system
                .name_servers()
                .iter()
                .filter(|s| family.allows(s.ip))
                .cloned()
                .collect();
            if servers.is_empty() {
                return Err(NetError::Msg(format!(
                    "the system has no {} name server",
                    super::net::family_name(family)
                )));
            }
            let config = ResolverConfig::from_parts(
                system.domain().cloned(),
                system.search().to_vec(),
                servers,
            );
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.timeout = timeout;
    // `attempts` counts retries after the first try.
    options.attempts = 0;
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    builder.build()
}

fn record_type(kind: DnsRecordType) -> RecordType {
    match kind {
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Cname => RecordType::CNAME,
        DnsRecordType::Mx => RecordType::MX,
        DnsRecordType::Txt => RecordType::TXT,
        DnsRecordType::Ns => RecordType::NS,
    }
}

/// An answer failure is the target's (`fail`); a server that would not or
/// could not answer is `error`.
fn judge_error(
    error: &NetError,
    spec: &DnsSpec,
    shown: &str,
    server: &str,
    timeout: Duration,
    phases: &Phases,
) -> Report {
    let reason = match error {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NXDomain,
            ..
        })) => {
            return fail(
                format!("no such name: {shown} (NXDOMAIN)"),
                phases,
                Vec::new(),
            );
        }
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NoError,
            ..
        })) => {
            return fail(
                format!("no {} records for {shown}", spec.record_type.as_str()),
                phases,
                Vec::new(),
            );
        }
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. }))
        | NetError::Dns(DnsError::ResponseCode(response_code)) => {
            format!("{server} answered {}", rcode_name(*response_code))
        }
        NetError::Timeout => format!(
            "no answer from {server} within {}",
            format_duration(timeout)
        ),
        NetError::Io(e) => net::describe_io(e, server),
        NetError::NoConnections => format!("no name server to ask ({server})"),
        NetError::Truncated => format!(
            "the answer from {server} was truncated over UDP and not received whole over TCP"
        ),
        other => super::failure::dns_error(other, server),
    };
    Report::error(format!("DNS query failed: {reason}"), phases.clone())
}

fn fail(reason: String, phases: &Phases, notes: Vec<String>) -> Report {
    Report {
        outcome: Outcome::Fail,
        phases: phases.clone(),
        error: Some(reason),
        notes,
        ..Report::default()
    }
}

/// `SERVFAIL`, `REFUSED`...: the names operators know from dig.
fn rcode_name(code: ResponseCode) -> String {
    let name = match code {
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        other => return format!("response code {} ({other})", u16::from(other)),
    };
    name.to_string()
}

/// One record of the queried type, in a form that compares and sorts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Ip(IpAddr),
    Mx {
        preference: u16,
        exchange: String,
    },
    /// CNAME, NS: lowercase, no trailing dot.
    Name(String),
    /// The character strings concatenated.
    Txt(String),
}

impl Answer {
    /// Records of other types in the answer (the CNAME chain before an A
    /// record, say) are not answers to the question.
    fn from_rdata(data: &RData, kind: DnsRecordType) -> Option<Answer> {
        match (data, kind) {
            (RData::A(a), DnsRecordType::A) => Some(Answer::Ip(IpAddr::V4(a.0))),
            (RData::AAAA(aaaa), DnsRecordType::Aaaa) => Some(Answer::Ip(IpAddr::V6(aaaa.0))),
            (RData::CNAME(cname), DnsRecordType::Cname) => Some(Answer::Name(name_text(&cname.0))),
            (RData::NS(ns), DnsRecordType::Ns) => Some(Answer::Name(name_text(&ns.0))),
            (RData::MX(mx), DnsRecordType::Mx) => Some(Answer::Mx {
                preference: mx.preference,
                exchange: name_text(&mx.exchange),
            }),
            (RData::TXT(txt), DnsRecordType::Txt) => {
                let bytes: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|part| part.iter().copied())
                    .collect();
                Some(Answer::Txt(String::from_utf8_lossy(&bytes).into_owned()))
            }
            _ => None,
        }
    }

    fn render(&self) -> String {
        match self {
            Answer::Ip(ip) => ip.to_string(),
            Answer::Mx {
                preference,
                exchange,
            } => format!("{preference} {exchange}"),
            Answer::Name(name) => name.clone(),
            Answer::Txt(text) => text
                .chars()
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect(),
        }
    }

    /// Addresses compare as addresses (`2001:DB8::10` is `2001:db8::10`),
    /// names case-insensitively without the trailing dot, TXT exactly; an MX
    /// matches `10 mail.example.com` or just `mail.example.com`.
    fn matches(&self, expected: &str) -> bool {
        match self {
            Answer::Ip(ip) => expected.parse::<IpAddr>().is_ok_and(|e| e == *ip),
            Answer::Name(name) => normalize_name(expected) == *name,
            Answer::Mx {
                preference,
                exchange,
            } => match expected.split_once(char::is_whitespace) {
                Some((pref, host)) => {
                    pref.parse::<u16>().is_ok_and(|p| p == *preference)
                        && normalize_name(host) == *exchange
                }
                None => normalize_name(expected) == *exchange,
            },
            Answer::Txt(text) => expected == text,
        }
    }
}

/// A name as answers are shown: ASCII (punycode), lowercase, no trailing dot.
fn name_text(name: &Name) -> String {
    let text = name.to_ascii();
    let text = text.trim_end_matches('.');
    if text.is_empty() {
        ".".to_string()
    } else {
        text.to_ascii_lowercase()
    }
}

/// A name the user wrote, in the form of `name_text`.
fn normalize_name(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "." {
        return ".".to_string();
    }
    match Name::from_str_relaxed(trimmed) {
        Ok(name) => name_text(&name),
        Err(_) => trimmed.trim_end_matches('.').to_lowercase(),
    }
}

/// The configured name as shown in reasons: as written, without the trailing dot.
fn display_name(name: &str) -> String {
    let trimmed = name.trim();
    match trimmed.trim_end_matches('.') {
        "" => trimmed.to_string(),
        short => short.to_string(),
    }
}

/// `a, b, c`, at most `limits::DNS_NOTE_ANSWERS_MAX` answers of at most `limits::DNS_ANSWER_CHARS_MAX`
/// characters each, then how many more there were.
fn summarize(answers: &[String]) -> String {
    let mut shown: Vec<String> = answers
        .iter()
        .take(limits::DNS_NOTE_ANSWERS_MAX)
        .map(|answer| {
            if answer.chars().count() <= limits::DNS_ANSWER_CHARS_MAX {
                answer.clone()
            } else {
                let cut: String = answer
                    .chars()
                    .take(limits::DNS_ANSWER_CHARS_MAX - 1)
                    .collect();
                format!("{cut}…")
            }
        })
        .collect();
    if answers.len() > limits::DNS_NOTE_ANSWERS_MAX {
        shown.push(format!(
            "… ({} more)",
            answers.len() - limits::DNS_NOTE_ANSWERS_MAX
        ));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        name: &str,
        record_type: DnsRecordType,
        resolver: SocketAddr,
        expect: &[&str],
    ) -> DnsSpec {
        DnsSpec {
            name: name.to_string(),
            record_type,
            resolver: Some(resolver),
            expect: expect.iter().map(|s| s.to_string()).collect(),
            ip_family: IpFamily::Any,
        }
    }

    #[test]
    fn addresses_compare_as_addresses() {
        let v6 = Answer::Ip("2001:db8::10".parse().unwrap());
        assert!(v6.matches("2001:DB8:0::10"));
        assert!(!v6.matches("2001:db8::11"));
        assert!(!v6.matches("not an address"));
        let v4 = Answer::Ip("192.0.2.10".parse().unwrap());
        assert!(v4.matches("192.0.2.10"));
        assert!(!v4.matches("192.0.2.1"));
    }

    #[test]
    fn names_ignore_case_and_the_trailing_dot() {
        let name = Answer::Name(name_text(&Name::from_ascii("WWW.Example.TEST.").unwrap()));
        assert_eq!(name.render(), "www.example.test");
        assert!(name.matches("www.example.test"));
        assert!(name.matches("WWW.EXAMPLE.TEST."));
        assert!(!name.matches("www.example.org"));
        let idn = Answer::Name(name_text(&Name::from_utf8("bücher.example.").unwrap()));
        assert_eq!(idn.render(), "xn--bcher-kva.example");
        assert!(idn.matches("Bücher.example."));
    }

    #[test]
    fn mx_matches_with_or_without_the_preference() {
        let mx = Answer::Mx {
            preference: 10,
            exchange: "mail.example.test".into(),
        };
        assert_eq!(mx.render(), "10 mail.example.test");
        assert!(mx.matches("10 mail.example.test"));
        assert!(mx.matches("10  Mail.Example.Test."));
        assert!(mx.matches("mail.example.test"));
        assert!(!mx.matches("20 mail.example.test"));
        assert!(!mx.matches("10 other.example.test"));
    }

    #[test]
    fn txt_is_exact_and_rendered_on_one_line() {
        let txt = Answer::Txt("v=spf1 -all".into());
        assert!(txt.matches("v=spf1 -all"));
        assert!(!txt.matches("V=SPF1 -ALL"));
        assert_eq!(Answer::Txt("a\nb".into()).render(), "a\u{FFFD}b");
    }

    #[test]
    fn the_summary_is_bounded() {
        let many: Vec<String> = (0..limits::DNS_NOTE_ANSWERS_MAX + 5)
            .map(|i| format!("10.0.0.{i}"))
            .collect();
        let text = summarize(&many);
        assert!(text.starts_with("10.0.0.0, 10.0.0.1, "), "{text}");
        assert!(
            text.ends_with(&format!(
                "10.0.0.{}, … (5 more)",
                limits::DNS_NOTE_ANSWERS_MAX - 1
            )),
            "{text}"
        );
        let long = summarize(&["x".repeat(limits::DNS_ANSWER_CHARS_MAX * 3)]);
        assert_eq!(long.chars().count(), limits::DNS_ANSWER_CHARS_MAX);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn response_codes_are_named_like_dig_does() {
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(
            rcode_name(ResponseCode::BADCOOKIE),
            "response code 23 (Bad server cookie)"
        );
    }

    #[tokio::test]
    async fn a_silent_server_is_an_error_after_the_query_timeout() {
        // Nothing listens on this port; an unconnected UDP socket gets no ICMP
        // error, so the query is simply never answered.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = SocketAddr::from(([127, 0, 0, 1], port));
        let mut phases = Phases::default();
        let spec = spec("www.example.test", DnsRecordType::A, dead, &[]);
        let report = run_with_timeout(&spec, &mut phases, Duration::from_millis(300)).await;
        assert_eq!(report.outcome, Outcome::Error, "{report:?}");
        assert_eq!(
            report.error.as_deref(),
            Some(format!("DNS query failed: no answer from {dead} within 300ms").as_str())
        );
        assert!(report.phases.dns.is_some());
    }

    #[tokio::test]
    async fn an_invalid_name_is_an_error_without_a_query() {
        let mut phases = Phases::default();
        let spec = spec(
            "bad..name",
            DnsRecordType::A,
            SocketAddr::from(([127, 0, 0, 1], 9)),
            &[],
        );
        let report = run(&spec, &mut phases).await;
        assert_eq!(report.outcome, Outcome::Error, "{report:?}");
        assert!(
            report
                .error
                .as_deref()
                .unwrap_or("")
                .starts_with("DNS query failed: \"bad..name\" is not a valid domain name"),
            "{report:?}"
        );
        assert!(report.phases.dns.is_none());
    }
}

//! The `dns` check kind: a name, a record type, an optional resolver and
//! the values the answer must hold.

use super::check::{IpFamily, check_literal_family, decode_ip_family};
use super::decode::{self, Ctx};
use super::yaml::{Node, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsRecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
}

impl DnsRecordType {
    const NAMES: [(&'static str, DnsRecordType); 6] = [
        ("A", DnsRecordType::A),
        ("AAAA", DnsRecordType::Aaaa),
        ("CNAME", DnsRecordType::Cname),
        ("MX", DnsRecordType::Mx),
        ("TXT", DnsRecordType::Txt),
        ("NS", DnsRecordType::Ns),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("A")
    }
}

#[derive(Clone, Debug)]
pub struct DnsSpec {
    pub name: String,
    pub record_type: DnsRecordType,
    /// `None`: the system's resolver configuration.
    pub resolver: Option<std::net::SocketAddr>,
    /// Every value must be in the answer.
    pub expect: Vec<String>,
    /// Which of the system's name servers to ask (by their address family).
    pub ip_family: IpFamily,
}
pub(super) fn decode_dns(ctx: &mut Ctx, name: &str, node: &Node) -> Option<DnsSpec> {
    let what = format!("`dns` of check `{name}`");
    let fields = ctx.fields(
        node,
        &what,
        &["name", "type", "resolver", "expect", "ip_family"],
    )?;
    let query = match fields.get("name") {
        Some(n) => ctx.string(n, "`name`").and_then(|q| {
            if q.is_empty() || q.len() > 253 {
                ctx.error(n.pos, "`name` must be a domain name of 1 to 253 characters");
                None
            } else {
                Some(q)
            }
        }),
        None => {
            ctx.error(fields.pos, format!("{what} needs the `name` to look up"));
            None
        }
    };
    let record_type = match fields.get("type") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`type`")?.to_ascii_uppercase();
            match DnsRecordType::NAMES.iter().find(|(k, _)| *k == text) {
                Some((_, t)) => Some(*t),
                None => {
                    ctx.error(n.pos, format!("unsupported record type `{text}`; expected A, AAAA, CNAME, MX, TXT or NS"));
                    None
                }
            }
        }),
        None => Some(DnsRecordType::A),
    };
    let resolver = match fields.get("resolver") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`resolver`")?;
            let parsed = text.parse::<std::net::SocketAddr>().or_else(|_| {
                text.parse::<std::net::IpAddr>()
                    .map(|ip| std::net::SocketAddr::new(ip, 53))
            });
            match parsed {
                Ok(addr) => Some(Some(addr)),
                Err(_) => {
                    ctx.error(
                        n.pos,
                        format!("`resolver` `{text}` must be ip:port (or an IP, for port 53)"),
                    );
                    None
                }
            }
        }),
        None => Some(None),
    };
    let expect = match fields.get("expect") {
        Some(n) => match &n.value {
            Value::Seq(_) => ctx
                .string_list(n, "`expect`")
                .map(|l| l.into_iter().map(|(s, _)| s).collect()),
            _ => ctx.string(n, "`expect`").map(|s| vec![s]),
        },
        None => Some(Vec::new()),
    };
    let ip_family = decode_ip_family(ctx, &fields);
    if let (Some(Some(server)), Some(family)) = (&resolver, ip_family)
        && !check_literal_family(ctx, &fields, family, &server.ip().to_string())
    {
        return None;
    }
    Some(DnsSpec {
        name: query?,
        record_type: record_type?,
        resolver: resolver?,
        expect: expect?,
        ip_family: ip_family?,
    })
}

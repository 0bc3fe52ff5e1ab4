//! The `tcp` check kind: connect to `host:port`, optionally send a line and
//! look for a substring in the banner.

use super::check::{
    HostPort, IpFamily, check_literal_family, decode_ip_family, host_port, optional_string,
};
use super::decode::Ctx;
use super::yaml::Node;

#[derive(Clone, Debug)]
pub struct TcpSpec {
    pub address: HostPort,
    /// Written after connecting, before reading the banner.
    pub send: Option<String>,
    /// A substring the banner (what the server sends first) must contain.
    pub expect: Option<String>,
    pub ip_family: IpFamily,
}
pub(super) fn decode_tcp(ctx: &mut Ctx, name: &str, node: &Node) -> Option<TcpSpec> {
    let what = format!("`tcp` of check `{name}`");
    let fields = ctx.fields(node, &what, &["address", "send", "expect", "ip_family"])?;
    let address = host_port(ctx, &fields, "address", &what);
    let send = optional_string(ctx, &fields, "send");
    let expect = optional_string(ctx, &fields, "expect");
    let ip_family = decode_ip_family(ctx, &fields);
    if let (Some(address), Some(family)) = (&address, ip_family)
        && !check_literal_family(ctx, &fields, family, &address.host)
    {
        return None;
    }
    Some(TcpSpec {
        address: address?,
        send: send?,
        expect: expect?,
        ip_family: ip_family?,
    })
}

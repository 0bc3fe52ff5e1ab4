//! Several aggregators for one probe: the list given to `--aggregator`
//! (checked once at start), which one the probe uses now, the order in
//! which a request tries them, and the plain-words line said when the probe
//! moves from one to the next. Pure: the requests are in `mod.rs`.
//!
//! A request starts at the aggregator in use and, on a failure that another
//! replica can answer (no connection, a TLS error, a timeout, a 5xx such as
//! the 503 of a replica that lost its database), tries the next in the list,
//! wrapping around, each at most once. The first that answers becomes the
//! one in use. Results are idempotent by id, so a batch that reached a dying
//! replica and is sent again to another is stored once.

use url::Url;

use super::UplinkError;
use crate::limits;
use crate::transport::TransportError;

/// The aggregators of `--aggregator`, in the order given; duplicates and
/// non-http(s) URLs refused, at most `PROBE_AGGREGATORS_MAX`.
pub(crate) fn aggregator_list(urls: Vec<Url>) -> Result<Vec<Url>, UplinkError> {
    if urls.is_empty() {
        return Err(UplinkError::Url("(none given)".to_string()));
    }
    if urls.len() > limits::PROBE_AGGREGATORS_MAX {
        return Err(UplinkError::TooMany(urls.len()));
    }
    let mut seen: Vec<Url> = Vec::with_capacity(urls.len());
    for url in urls {
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(UplinkError::Url(url.to_string()));
        }
        if seen.contains(&url) {
            return Err(UplinkError::Duplicate(url.to_string()));
        }
        seen.push(url);
    }
    Ok(seen)
}

/// Whether another aggregator may answer what this one could not: no
/// connection (refused, reset, DNS, TLS), no answer in time, or a 5xx. A
/// 4xx, a redirect or an unreadable answer is this deployment's answer and
/// would be the same elsewhere.
pub(crate) fn fails_over(error: &TransportError) -> bool {
    match error {
        TransportError::Unavailable(_) | TransportError::TimedOut { .. } => true,
        TransportError::Refused { status, .. } => *status >= 500,
        _ => false,
    }
}

/// A few words for the log line: "connection refused", "HTTP 503".
pub(crate) fn short_reason(error: &TransportError) -> String {
    match error {
        TransportError::Unavailable(text) => {
            // Past `error sending request for url (...)`: the URL is in the
            // line already, and a host name must not look like a cause.
            let text = text.split_once("): ").map_or(text.as_str(), |(_, c)| c);
            let lower = text.to_ascii_lowercase();
            if lower.contains("connection refused") {
                "connection refused".to_string()
            } else if lower.contains("no connection within") {
                format!(
                    "no connection within {}s",
                    limits::PROBE_CONNECT_TIMEOUT.as_secs()
                )
            } else if lower.contains("certificate")
                || lower.contains("tls")
                || lower.contains("handshake")
            {
                format!("TLS error: {text}")
            } else if lower.contains("connection reset") {
                "connection reset".to_string()
            } else if lower.contains("connection closed") || lower.contains("broken pipe") {
                "connection closed".to_string()
            } else if lower.contains("dns") || lower.contains("lookup") {
                format!("name not resolved: {text}")
            } else {
                // The innermost cause says most; the URL is in the line.
                text.rsplit(": ").next().unwrap_or(text).to_string()
            }
        }
        TransportError::TimedOut { after } => {
            format!("no answer within {}s", after.as_secs_f64())
        }
        TransportError::Refused { status, .. } => format!("HTTP {status}"),
        other => other.to_string(),
    }
}

/// Which aggregator is in use, and what has been said about it.
#[derive(Debug)]
pub(crate) struct Rotation {
    urls: Vec<Url>,
    current: usize,
    /// The aggregator last named in a log line as the one in use.
    announced: Option<usize>,
    /// Whether the one in use answered since the last move: moves during an
    /// outage of all of them are not logged one by one.
    healthy: bool,
    /// Moves from one aggregator to another.
    failovers: u64,
}

impl Rotation {
    pub(crate) fn new(urls: Vec<Url>) -> Rotation {
        Rotation {
            urls,
            current: 0,
            announced: Some(0),
            healthy: true,
            failovers: 0,
        }
    }

    pub(crate) fn urls(&self) -> &[Url] {
        &self.urls
    }

    pub(crate) fn url(&self, at: usize) -> &Url {
        &self.urls[at % self.urls.len()]
    }

    pub(crate) fn current(&self) -> &Url {
        self.url(self.current)
    }

    pub(crate) fn failovers(&self) -> u64 {
        self.failovers
    }

    /// The order a request tries the aggregators in: the one in use, then
    /// the others after it in the list, wrapping around.
    pub(crate) fn order(&self) -> Vec<usize> {
        let n = self.urls.len();
        (0..n).map(|i| (self.current + i) % n).collect()
    }

    /// Aggregator `at` failed (`reason`). Moves on if it is the one in use
    /// (another request may have moved already); the line to log at warn
    /// level, when there is news.
    pub(crate) fn failed(&mut self, at: usize, reason: &str) -> Option<String> {
        let n = self.urls.len();
        if n < 2 || at != self.current {
            return None;
        }
        self.current = (at + 1) % n;
        self.failovers += 1;
        if !self.healthy {
            return None;
        }
        self.healthy = false;
        self.announced = Some(self.current);
        Some(format!(
            "aggregator {} unreachable ({reason}); using {}",
            self.urls[at], self.urls[self.current]
        ))
    }

    /// Aggregator `at` answered: it is the one in use. The line to log at
    /// info level when it is not the one last named.
    pub(crate) fn succeeded(&mut self, at: usize) -> Option<String> {
        self.current = at;
        self.healthy = true;
        if self.urls.len() < 2 || self.announced == Some(at) {
            return None;
        }
        self.announced = Some(at);
        Some(format!("aggregator {} answers; using it", self.urls[at]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| u.parse().unwrap()).collect()
    }

    #[test]
    fn the_list_is_kept_in_order_and_checked() {
        let list = aggregator_list(urls(&["https://a.example/", "https://b.example/"])).unwrap();
        assert_eq!(list[0].as_str(), "https://a.example/");
        assert_eq!(list[1].as_str(), "https://b.example/");
        assert!(matches!(
            aggregator_list(urls(&["https://a.example/", "https://a.example/"])),
            Err(UplinkError::Duplicate(_))
        ));
        assert!(matches!(
            aggregator_list(urls(&["ftp://a.example/"])),
            Err(UplinkError::Url(_))
        ));
        assert!(matches!(
            aggregator_list(Vec::new()),
            Err(UplinkError::Url(_))
        ));
        let many: Vec<String> = (0..=limits::PROBE_AGGREGATORS_MAX)
            .map(|i| format!("http://h{i}.example/"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            aggregator_list(urls(&many)),
            Err(UplinkError::TooMany(_))
        ));
    }

    #[test]
    fn requests_try_the_one_in_use_then_the_next_wrapping_around() {
        let mut rotation = Rotation::new(urls(&["http://a/", "http://b/", "http://c/"]));
        assert_eq!(rotation.order(), [0, 1, 2]);
        assert_eq!(
            rotation.failed(0, "connection refused").as_deref(),
            Some("aggregator http://a/ unreachable (connection refused); using http://b/")
        );
        assert_eq!(rotation.order(), [1, 2, 0]);
        // Another request failing at a, after the move: no second move.
        assert_eq!(rotation.failed(0, "connection refused"), None);
        assert_eq!(rotation.current().as_str(), "http://b/");
        // b answers: already named, nothing to say.
        assert_eq!(rotation.succeeded(1), None);
        assert_eq!(rotation.failovers(), 1);
        // b fails: c; c answers.
        assert!(rotation.failed(1, "HTTP 503").is_some());
        assert_eq!(rotation.order(), [2, 0, 1]);
        assert_eq!(rotation.succeeded(2), None);
        // All down: one line for the first move, none for the others.
        assert!(rotation.failed(2, "connection refused").is_some());
        assert_eq!(rotation.failed(0, "connection refused"), None);
        assert_eq!(rotation.failed(1, "connection refused"), None);
        assert_eq!(rotation.current().as_str(), "http://c/");
        // b is back first: said once.
        assert_eq!(
            rotation.succeeded(1).as_deref(),
            Some("aggregator http://b/ answers; using it")
        );
        assert_eq!(rotation.succeeded(1), None);
        assert_eq!(rotation.order(), [1, 2, 0]);
    }

    #[test]
    fn one_aggregator_never_moves() {
        let mut rotation = Rotation::new(urls(&["http://a/"]));
        assert_eq!(rotation.failed(0, "connection refused"), None);
        assert_eq!(rotation.succeeded(0), None);
        assert_eq!(rotation.order(), [0]);
        assert_eq!(rotation.failovers(), 0);
    }

    #[test]
    fn only_failures_another_replica_can_answer_move_on() {
        let unavailable = TransportError::Unavailable(
            "error sending request: tcp connect error: Connection refused (os error 111)".into(),
        );
        assert!(fails_over(&unavailable));
        assert_eq!(short_reason(&unavailable), "connection refused");
        let killed = TransportError::Unavailable(
            "error sending request for url (http://127.0.0.1:1/api/v1/probe/checks?region=a&wait=25): client error (SendRequest): connection closed before message completed".into(),
        );
        assert_eq!(short_reason(&killed), "connection closed");
        let other = TransportError::Unavailable(
            "error sending request for url (http://a/): client error (Connect): something odd"
                .into(),
        );
        assert_eq!(short_reason(&other), "something odd");
        let unhealthy = TransportError::Refused {
            status: 503,
            body: "database unreachable".into(),
        };
        assert!(fails_over(&unhealthy));
        assert_eq!(short_reason(&unhealthy), "HTTP 503");
        assert!(fails_over(&TransportError::TimedOut {
            after: std::time::Duration::from_secs(30)
        }));
        assert!(!fails_over(&TransportError::Refused {
            status: 403,
            body: String::new()
        }));
        assert!(!fails_over(&TransportError::Rejected("bad batch".into())));
    }
}

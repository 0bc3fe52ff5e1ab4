//! Three regions on loopback: their probe tokens and probes file, and a
//! target that fails per region (it tells regions apart by the probe's
//! User-Agent) and counts each region's requests.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;

pub const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

pub fn token(region: &str) -> String {
    format!("probe-token-for-{region}-0123456789")
}

/// Writes `probes.yaml` with a token for each of `REGIONS` into `dir`.
pub fn write_probes_file(dir: &Path) {
    let probes: String = REGIONS
        .iter()
        .map(|r| format!("  {r}: {{ token: \"{}\" }}\n", token(r)))
        .collect();
    std::fs::write(dir.join("probes.yaml"), format!("probes:\n{probes}")).unwrap();
}

/// A target whose `/health` fails (500) for the regions in `failing`, and
/// counts requests per region.
#[derive(Clone, Default)]
pub struct RegionalTarget {
    failing: Arc<Mutex<HashSet<String>>>,
    pub requests: Arc<Mutex<HashMap<String, usize>>>,
}

impl RegionalTarget {
    /// Serves `/health` on a loopback port.
    pub async fn start() -> (RegionalTarget, SocketAddr) {
        let target = RegionalTarget::default();
        let addr = super::serve_on_loopback(
            Router::new()
                .route("/health", get(health))
                .with_state(target.clone()),
        )
        .await;
        (target, addr)
    }

    pub fn fail(&self, regions: &[&str]) {
        *self.failing.lock().unwrap() = regions.iter().map(|r| r.to_string()).collect();
    }
}

async fn health(State(target): State<RegionalTarget>, headers: HeaderMap) -> StatusCode {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let region = agent
        .split("region=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or("")
        .to_string();
    *target
        .requests
        .lock()
        .unwrap()
        .entry(region.clone())
        .or_default() += 1;
    if target.failing.lock().unwrap().contains(&region) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

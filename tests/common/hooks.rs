//! A webhook receiver on loopback that keeps every JSON body it gets, for
//! tests that count the alerts Lookout sends.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

/// Every webhook body received, in order.
#[derive(Clone, Default)]
pub struct Hooks(Arc<Mutex<Vec<Value>>>);

impl Hooks {
    /// Starts the receiver; alerts posted to the returned URL are kept.
    pub async fn start() -> (Hooks, String) {
        let hooks = Hooks::default();
        let addr = super::serve_on_loopback(
            Router::new()
                .route("/hook", post(hook))
                .with_state(hooks.clone()),
        )
        .await;
        (hooks, format!("http://{addr}/hook"))
    }

    /// The bodies whose `event` is `kind` (`down`, `up`, `probe_stale`...).
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == kind)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

async fn hook(State(hooks): State<Hooks>, body: Bytes) -> StatusCode {
    if let Ok(value) = serde_json::from_slice(&body) {
        hooks.0.lock().unwrap().push(value);
    }
    StatusCode::OK
}

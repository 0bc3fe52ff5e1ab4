//! `format: template` webhooks: the README's recipes (read from README.md,
//! their hosts pointed at a local receiver) sent by `lookout serve` for a
//! real outage and recovery, each request checked for method, URL, headers
//! and body; and a broken template refused by `lookout validate` at its line
//! and column in the YAML.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use common::{ConfigDirs, Server, start_target, wait_for};
use serde_json::Value;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Request {
    method: Method,
    /// Path and query.
    uri: String,
    headers: HeaderMap,
    body: String,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Request>>>);

impl Receiver {
    /// The requests whose path starts with `prefix`.
    fn under(&self, prefix: &str) -> Vec<Request> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.uri.starts_with(prefix))
            .cloned()
            .collect()
    }
}

async fn record(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    receiver.0.lock().unwrap().push(Request {
        method,
        uri: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    "{\"ok\": true}"
}

/// The YAML block after `<!-- recipe: NAME -->` in README.md, without its
/// `channels:` line.
fn recipe(readme: &str, name: &str) -> String {
    let marker = format!("<!-- recipe: {name} -->");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no recipe {name}"));
    let rest = &readme[start..];
    let open = rest.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let close = rest[open..].find("```").expect("the block's end") + open;
    let block = &rest[open..close];
    block
        .strip_prefix("channels:\n")
        .unwrap_or_else(|| panic!("recipe {name} starts with `channels:`"))
        .to_string()
}

const RECIPES: [&str; 6] = [
    "telegram",
    "ntfy",
    "mattermost",
    "google-chat",
    "opsgenie",
    "pushover",
];

/// Waits until the first check's status is `status`.
async fn wait_status(base: &str, status: &str) {
    let http = common::client();
    wait_for(status, Duration::from_secs(60), || {
        let (http, base) = (http.clone(), base.to_string());
        async move {
            let (_, body) = common::get_json(&http, &format!("{base}/api/v1/checks")).await;
            (body["checks"][0]["status"] == status).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_recipes_send_what_each_service_expects() {
    let target = start_target().await;
    let receiver = Receiver::default();
    let addr =
        common::serve_on_loopback(Router::new().fallback(record).with_state(receiver.clone()))
            .await;
    let local = format!("http://{addr}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let mut alerts = String::from("channels:\n");
    for name in RECIPES {
        alerts.push_str(&recipe(&readme, name));
    }
    let alerts = alerts
        .replace("https://api.telegram.org", &format!("{local}/telegram"))
        .replace("https://ntfy.sh", &format!("{local}/ntfy"))
        .replace("https://api.opsgenie.com", &format!("{local}/opsgenie"))
        .replace("https://api.pushover.net", &format!("{local}/pushover"));
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: flip\n    http: {{ url: \"{}\" }}\n    every: 500ms\n    timeout: 2s\n    alert: {{ failures: 1, channels: [{}] }}\n",
        target.url("/flip"),
        RECIPES.join(", ")
    ));
    std::fs::write(dirs.alerts().join("alerts.yaml"), &alerts).unwrap();
    let mattermost = format!("{local}/mattermost/hooks/xyz");
    let google = format!("{local}/gchat/v1/spaces/SPACE/messages?key=K&token=T");
    let env = [
        ("TELEGRAM_BOT_TOKEN", "123:abc"),
        ("TELEGRAM_CHAT_ID", "-100777"),
        ("NTFY_TOPIC", "lookout-alerts"),
        ("MATTERMOST_WEBHOOK_URL", mattermost.as_str()),
        ("GOOGLE_CHAT_WEBHOOK_URL", google.as_str()),
        ("OPSGENIE_API_KEY", "genie-key-0000"),
        ("PUSHOVER_APP_TOKEN", "app-token"),
        ("PUSHOVER_USER_KEY", "user-key"),
    ];
    let mut args: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--public-url".into(),
        "http://status.example.com/".into(),
    ];
    args.extend(dirs.flags());
    let server = Server::spawn(&args, &env, "listening on ");
    wait_status(&server.base, "up").await;

    target.set_flip(500);
    let wait_n = |prefix: &'static str, n: usize| wait_requests(&receiver, &server, prefix, n);
    let telegram = wait_n("/telegram/", 1).await;
    let ntfy = wait_n("/ntfy/", 1).await;
    let opsgenie = wait_n("/opsgenie/", 1).await;
    let mattermost_hits = wait_n("/mattermost/", 1).await;
    let google_hits = wait_n("/gchat/", 1).await;
    let pushover = wait_n("/pushover/", 1).await;

    // Telegram: sendMessage with the chat and the text.
    let t = &telegram[0];
    assert_eq!(t.method, Method::POST);
    assert_eq!(t.uri, "/telegram/bot123:abc/sendMessage");
    assert_eq!(t.header("content-type"), "application/json");
    let body = t.json();
    assert_eq!(body["chat_id"], "-100777");
    assert_eq!(body["disable_web_page_preview"], true);
    let text = body["text"].as_str().unwrap_or("");
    assert!(text.starts_with("flip is DOWN\n"), "{text}");
    assert!(
        text.ends_with("\nhttp://status.example.com/checks/flip"),
        "{text}"
    );

    // ntfy: the message as the body, title and priority as headers.
    let n = &ntfy[0];
    assert_eq!(n.method, Method::POST);
    assert_eq!(n.uri, "/ntfy/lookout-alerts");
    assert_eq!(n.header("title"), "flip is DOWN");
    assert_eq!(n.header("priority"), "urgent");
    assert_eq!(n.header("tags"), "rotating_light");
    assert!(n.header("content-type").starts_with("text/plain"));
    assert!(n.body.starts_with("flip is DOWN"), "{}", n.body);

    // Opsgenie: created with the incident as alias.
    let o = &opsgenie[0];
    assert_eq!(o.method, Method::POST);
    assert_eq!(o.uri, "/opsgenie/v2/alerts");
    assert_eq!(o.header("authorization"), "GenieKey genie-key-0000");
    let created = o.json();
    assert_eq!(created["message"], "flip is DOWN");
    assert_eq!(created["priority"], "P1");
    assert_eq!(created["details"]["check"], "flip");
    let alias = created["alias"].as_str().unwrap_or("").to_string();
    assert_eq!(alias.len(), 36, "a uuid: {alias}");
    assert!(
        created["description"]
            .as_str()
            .is_some_and(|d| d.contains("HTTP 500")),
        "{created}"
    );

    // Mattermost, Google Chat, Pushover: JSON their APIs take.
    assert_eq!(mattermost_hits[0].uri, "/mattermost/hooks/xyz");
    assert_eq!(mattermost_hits[0].json()["username"], "Lookout");
    assert!(
        mattermost_hits[0].json()["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("**flip is DOWN**\n"))
    );
    assert_eq!(
        google_hits[0].uri,
        "/gchat/v1/spaces/SPACE/messages?key=K&token=T"
    );
    assert_eq!(
        google_hits[0].header("content-type"),
        "application/json; charset=UTF-8"
    );
    assert!(
        google_hits[0].json()["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("*flip is DOWN*\n"))
    );
    let p = pushover[0].json();
    assert_eq!(pushover[0].uri, "/pushover/1/messages.json");
    assert_eq!(
        (
            p["token"].as_str(),
            p["user"].as_str(),
            p["priority"].as_i64()
        ),
        (Some("app-token"), Some("user-key"), Some(1))
    );
    assert_eq!(p["url"], "http://status.example.com/checks/flip");

    // Recovery: Opsgenie's alert closed through its alias, Telegram told.
    target.set_flip(200);
    let opsgenie = wait_n("/opsgenie/", 2).await;
    let close = &opsgenie[1];
    assert_eq!(close.method, Method::POST);
    assert_eq!(
        close.uri,
        format!("/opsgenie/v2/alerts/{alias}/close?identifierType=alias")
    );
    assert_eq!(close.header("authorization"), "GenieKey genie-key-0000");
    assert_eq!(close.json()["source"], "lookout");
    let telegram = wait_n("/telegram/", 2).await;
    let text = telegram[1].json()["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(text.starts_with("flip is UP again\n"), "{text}");
    let ntfy = wait_n("/ntfy/", 2).await;
    assert_eq!(ntfy[1].header("priority"), "default");
    drop(server);
}

/// The first `n` requests under `prefix`, waiting up to a minute (the
/// server's log shown if they do not come).
async fn wait_requests(
    receiver: &Receiver,
    server: &Server,
    prefix: &str,
    n: usize,
) -> Vec<Request> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = receiver.under(prefix);
        if got.len() >= n {
            return got.into_iter().take(n).collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {n} request(s) under {prefix}; got {got:?}\nserver log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn validate_places_a_template_error_in_the_yaml() {
    let dirs = ConfigDirs::new("checks: []\n");
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        "channels:\n  chat:\n    webhook:\n      format: template\n      url: \"https://chat.example.com/{{ check }\"\n      body: |\n        {\"text\":\n          {{ summary | tojson }}, {% if %}}\n",
    )
    .unwrap();
    let file = common::path_str(&dirs.alerts().join("alerts.yaml"));
    let out = std::process::Command::new(common::lookout_bin())
        .args(["validate", "--checks"])
        .arg(dirs.checks())
        .arg("--alerts")
        .arg(dirs.alerts())
        .output()
        .expect("run lookout validate");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    // `{{ check }` is unclosed: the error is at its end, on line 5.
    assert!(
        lines[0].starts_with(&format!("{file}:5:")) && lines[0].contains("template error in `url`"),
        "{stderr}"
    );
    // `{% if %}` has no condition: line 8, where `%}` follows `if`.
    assert!(
        lines[1].starts_with(&format!("{file}:8:"))
            && lines[1].contains("template error in `body`"),
        "{stderr}"
    );
}

#[test]
fn format_keys_are_checked_where_they_are() {
    let dirs = ConfigDirs::new("checks: []\n");
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        "channels:
  a:
    webhook:
      url: https://h/
      urls: [https://h2/]
      body: x
  b:
    webhook:
      format: template
      url: https://h/
      method: FETCH
      body: { down: x, sideways: y }
  c:
    webhook:
      format: alertmanager
      urls: [https://am1:9093, \"ftp://am2\"]
      resend_every: 10ms
",
    )
    .unwrap();
    let errors = lookout::config::load(&dirs.checks(), &dirs.alerts())
        .err()
        .map(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())
        .unwrap_or_default();
    let file = common::path_str(&dirs.alerts().join("alerts.yaml"));
    let expected = [
        format!("{file}:5:13: `urls` is only read with `format: alertmanager`"),
        format!("{file}:6:13: `body` is only read with `format: template`"),
        format!(
            "{file}:11:15: unknown `method` `FETCH`; expected one of: GET, POST, PUT, PATCH, DELETE"
        ),
        format!(
            "{file}:12:24: unknown event kind `sideways` in `body`; expected one of: default, down, up, degraded, reminder, flapping, test, probe_stale, probe_back, group"
        ),
        format!("{file}:16:32: invalid webhook `url` `ftp://am2`; expected http:// or https://"),
        format!("{file}:17:21: `resend_every` is at least 1s"),
    ];
    assert_eq!(errors, expected);
}

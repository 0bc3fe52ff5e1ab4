//! The status page and its JSON rendered once per report and kept gzipped
//! (#19). At 10,000 checks the JSON is tens of MiB; encoding and
//! compressing it for every visitor cost hundreds of milliseconds and left
//! the allocator holding the transient strings. Here each body is made once
//! for a report (the report itself lives `STATUS_CACHE_FOR`), written
//! straight into a gzip encoder in bounded pieces, and kept only
//! compressed. A visitor that accepts gzip gets those bytes as they are
//! (`Content-Encoding: gzip`, `Vary: Accept-Encoding`, an `ETag` that
//! `If-None-Match` answers with 304); one that does not gets them inflated
//! as they are sent, a chunk at a time, never the whole plain body at once.
//!
//! An entry is stamped with the report, the config and a fingerprint of the
//! announcements it was made from (weak references: the cache keeps no
//! old report alive), and starts over when any of them changes.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Weak};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::limits;
use crate::status::StatusReport;

/// One body, gzipped, with what its response says about it.
pub(crate) struct Rendered {
    gzip: Bytes,
    etag: HeaderValue,
    content_type: &'static str,
}

/// Why a body could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenderError {
    #[error("cannot encode the status report: {0}")]
    Encode(String),
    #[error("the rendering task ended early: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What a cached body was made from.
struct Stamp {
    report: Weak<StatusReport>,
    config: Weak<Config>,
    notes: u64,
}

impl Stamp {
    fn same(&self, report: &Arc<StatusReport>, config: &Arc<Config>, notes: u64) -> bool {
        std::ptr::eq(self.report.as_ptr(), Arc::as_ptr(report))
            && std::ptr::eq(self.config.as_ptr(), Arc::as_ptr(config))
            && self.notes == notes
    }
}

#[derive(Default)]
struct Entries {
    stamp: Option<Stamp>,
    bodies: HashMap<String, Arc<Rendered>>,
}

/// The page's and the JSON's bodies, each kind behind its own lock so a
/// long JSON rendering does not hold up page views (concurrent visitors of
/// one kind wait for one rendering rather than each making their own).
#[derive(Default)]
pub struct RenderCache {
    html: tokio::sync::Mutex<Entries>,
    json: tokio::sync::Mutex<Entries>,
}

/// Which of the two kinds.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Html,
    Json,
}

impl RenderCache {
    /// The body `key` of `kind` for this report, config and announcements
    /// (`notes`: their fingerprint), made by `render` (into the writer it
    /// is given, off the async threads) when not cached.
    pub(crate) async fn get_or_render<F>(
        &self,
        kind: Kind,
        key: &str,
        (report, config, notes): (&Arc<StatusReport>, &Arc<Config>, u64),
        render: F,
    ) -> Result<Arc<Rendered>, RenderError>
    where
        F: FnOnce(&mut dyn Write) -> Result<(), String> + Send + 'static,
    {
        let mut entries = match kind {
            Kind::Html => self.html.lock().await,
            Kind::Json => self.json.lock().await,
        };
        let current = entries
            .stamp
            .as_ref()
            .is_some_and(|s| s.same(report, config, notes));
        if !current {
            entries.bodies.clear();
            entries.stamp = Some(Stamp {
                report: Arc::downgrade(report),
                config: Arc::downgrade(config),
                notes,
            });
        }
        if let Some(body) = entries.bodies.get(key) {
            return Ok(body.clone());
        }
        let content_type = match kind {
            Kind::Html => "text/html; charset=utf-8",
            Kind::Json => "application/json",
        };
        let rendered =
            Arc::new(tokio::task::spawn_blocking(move || compress(render, content_type)).await??);
        if entries.bodies.len() >= limits::STATUS_RENDERED_VARIANTS_MAX {
            entries.bodies.clear();
        }
        entries.bodies.insert(key.to_string(), rendered.clone());
        Ok(rendered)
    }
}

/// Runs `render` into a gzip encoder behind a small buffer.
fn compress<F>(render: F, content_type: &'static str) -> Result<Rendered, RenderError>
where
    F: FnOnce(&mut dyn Write) -> Result<(), String>,
{
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut buffered = std::io::BufWriter::with_capacity(limits::STATUS_RENDER_CHUNK, encoder);
    render(&mut buffered).map_err(RenderError::Encode)?;
    let encoder = buffered
        .into_inner()
        .map_err(|e| RenderError::Encode(e.error().to_string()))?;
    let mut gzip = encoder
        .finish()
        .map_err(|e| RenderError::Encode(e.to_string()))?;
    gzip.shrink_to_fit();
    let digest = ring::digest::digest(&ring::digest::SHA256, &gzip);
    let etag = format!("\"{}\"", hex::encode(&digest.as_ref()[..12]));
    Ok(Rendered {
        gzip: Bytes::from(gzip),
        etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        content_type,
    })
}

impl Rendered {
    /// The response to a request with `headers`: 304 when its
    /// `If-None-Match` names this body, the gzip bytes when it accepts
    /// gzip, else the bytes inflated as they are sent. `private`: the page
    /// needs credentials, so shared caches must not keep it.
    pub(crate) fn respond(&self, headers: &HeaderMap, private: bool) -> Response {
        let cache = HeaderValue::from_static(if private {
            "private, no-cache"
        } else {
            "no-cache"
        });
        let common = [
            (header::ETAG, self.etag.clone()),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
            (header::CACHE_CONTROL, cache),
        ];
        let matches = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == self.etag
            });
        if matches {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        let content_type = (
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if accepts_gzip(headers) {
            (
                common,
                [
                    content_type,
                    (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                ],
                self.gzip.clone(),
            )
                .into_response()
        } else {
            (common, [content_type], inflated(self.gzip.clone())).into_response()
        }
    }
}

/// Whether `Accept-Encoding` takes gzip (with a q-value above 0).
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
}

/// The plain body, inflated from `gzip` one chunk per poll.
fn inflated(gzip: Bytes) -> Body {
    use std::io::Read;
    let decoder = flate2::read::GzDecoder::new(std::io::Cursor::new(gzip));
    let chunks = futures_util::stream::unfold(Some(decoder), |state| async move {
        let mut decoder = state?;
        let mut chunk = vec![0u8; limits::STATUS_RENDER_CHUNK];
        let mut filled = 0;
        while filled < chunk.len() {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) => return Some((Err(error), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        chunk.truncate(filled);
        Some((Ok(Bytes::from(chunk)), Some(decoder)))
    });
    Body::from_stream(chunks)
}

/// A fingerprint of the announcements shown (they change the page).
pub(crate) fn fingerprint(notes: &[crate::config::page::Announcement]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match serde_json::to_vec(notes) {
        Ok(bytes) => bytes.hash(&mut hasher),
        // Cannot be told apart: never equal to an earlier one.
        Err(_) => std::time::SystemTime::now().hash(&mut hasher),
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn gzip_is_accepted_unless_refused() {
        let table = [
            ("gzip", true),
            ("br, gzip;q=0.5", true),
            ("GZIP", true),
            ("*", true),
            ("gzip;q=0", false),
            ("br", false),
            ("identity", false),
        ];
        for (value, expected) in table {
            assert_eq!(
                accepts_gzip(&with(header::ACCEPT_ENCODING, value)),
                expected,
                "{value}"
            );
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn one_body_gzipped_plain_or_not_modified() {
        let text = "<p>hello</p>".repeat(10_000);
        let copy = text.clone();
        let rendered = compress(
            move |out: &mut dyn Write| out.write_all(copy.as_bytes()).map_err(|e| e.to_string()),
            "text/html; charset=utf-8",
        )
        .unwrap();
        assert!(rendered.gzip.len() < text.len() / 20);

        let gzip = rendered.respond(&with(header::ACCEPT_ENCODING, "gzip"), false);
        assert_eq!(gzip.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(gzip.headers()[header::VARY], "accept-encoding");
        let etag = gzip.headers()[header::ETAG].clone();
        let body = axum::body::to_bytes(gzip.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, rendered.gzip);

        let plain = rendered.respond(&HeaderMap::new(), true);
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "private, no-cache");
        let body = axum::body::to_bytes(plain.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, text.as_bytes());

        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        let unchanged = rendered.respond(&again, false);
        assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    }
}

//! What the route modules share: the state every handler gets, and reading
//! a request body within a bound, only once the request is authenticated
//! (or throwing it away, bounded, when it is refused).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use crate::aggregator::Aggregator;
use crate::limits;

/// What handlers share: the aggregator, and the token that guards changes.
#[derive(Clone)]
pub struct ApiState {
    pub aggregator: Arc<Aggregator>,
    /// When set, requests that change something (silences) must carry
    /// `Authorization: Bearer <token>`.
    pub admin_token: Option<Arc<str>>,
    /// The status page's and its JSON's bodies, gzipped once per report.
    pub rendered: Arc<super::rendered::RenderCache>,
}

impl axum::extract::FromRef<ApiState> for Arc<super::rendered::RenderCache> {
    fn from_ref(state: &ApiState) -> Arc<super::rendered::RenderCache> {
        state.rendered.clone()
    }
}

impl axum::extract::FromRef<ApiState> for Arc<Aggregator> {
    fn from_ref(state: &ApiState) -> Arc<Aggregator> {
        state.aggregator.clone()
    }
}

/// Why a request body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than the {limit} bytes this route accepts")]
    TooLarge { limit: usize },
    #[error("reading the request body failed: {0}")]
    Read(#[from] axum::Error),
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        let status = match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Reads a request body of at most `limit` bytes, for handlers that have
/// authenticated the request first. A `Content-Length` over the limit is
/// refused before a byte is kept; a body without one is read as it comes
/// and refused as soon as it passes the limit. What is left of a refused
/// body is drained (`discard_body`).
pub async fn read_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    use futures_util::StreamExt;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        discard_body(body);
        return Err(BodyError::TooLarge { limit });
    }
    let mut read =
        bytes::BytesMut::with_capacity(declared.map_or(0, |length| length as usize).min(limit));
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if read.len() + chunk.len() > limit {
            discard_body(axum::body::Body::from_stream(chunks));
            return Err(BodyError::TooLarge { limit });
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.freeze())
}

/// Reads and throws away the rest of a refused request's body in the
/// background, bounded by `HTTP_REFUSED_BODY_DRAIN_*`: the answer goes out
/// at once, and a client still sending sees it instead of a reset. Nothing
/// is kept, so an unauthenticated upload costs no memory.
pub fn discard_body(body: axum::body::Body) {
    use futures_util::StreamExt;
    tokio::spawn(async move {
        let mut chunks = body.into_data_stream();
        let _ = tokio::time::timeout(limits::HTTP_REFUSED_BODY_DRAIN_TIME, async {
            let mut drained = 0usize;
            while let Some(Ok(chunk)) = chunks.next().await {
                drained += chunk.len();
                if drained > limits::HTTP_REFUSED_BODY_DRAIN_BYTES_MAX {
                    break;
                }
            }
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> axum::body::Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = sizes
            .iter()
            .map(|&n| Ok(Bytes::from(vec![b'x'; n])))
            .collect();
        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
    }

    fn declaring(length: usize) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_LENGTH,
            length.to_string().parse().unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn a_body_is_read_up_to_its_limit_and_refused_past_it() {
        let none = axum::http::HeaderMap::new();
        let read = read_body(&none, chunks(&[4, 6]), 10).await.unwrap();
        assert_eq!(read.len(), 10);
        let refused = read_body(&none, chunks(&[4, 6, 1]), 10).await;
        assert!(matches!(refused, Err(BodyError::TooLarge { limit: 10 })));
    }

    #[tokio::test]
    async fn a_declared_length_past_the_limit_is_refused_before_reading() {
        // A body that never comes: refused without waiting for it.
        let never = axum::body::Body::from_stream(futures_util::stream::pending::<
            Result<Bytes, std::io::Error>,
        >());
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            read_body(&declaring(11), never, 10),
        )
        .await
        .expect("answered without the body");
        assert!(matches!(refused, Err(BodyError::TooLarge { limit: 10 })));
        let response = refused.unwrap_err().into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}

//! Every way an admin request can fail, and the one place each becomes a response:
//! `application/problem+json` (RFC 9457) with a `detail` a person can act on.
//!
//! Must never leak internals: store errors become "the store is unavailable" with their kind,
//! never SQL or a URL.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::reply::{self, Body};
use crate::config::ConfigErrors;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a bearer token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    #[error("this needs the admin token; the token given has the read role")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("{0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the change is not a valid config")]
    Invalid(ConfigErrors),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is over {0} bytes")]
    TooLarge(usize),
    #[error("this needs the usage store, and none is configured ([database] enabled = false)")]
    NoStore,
    #[error("the usage store is unavailable ({0}); nothing was changed")]
    Store(String),
    #[error("the WebSocket feed is full ({0} clients)")]
    FeedFull(usize),
    #[error("origin not allowed: add it to [admin] allowed_origins")]
    Origin,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let kind = if e.is_transient() {
            "unreachable or timed out"
        } else {
            "it refused the query"
        };
        tracing::warn!(error = %e, "admin API: store call failed");
        ApiError::Store(kind.to_owned())
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::Origin => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoStore | ApiError::Store(_) | ApiError::FeedFull(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The problem+json response.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut problem = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        if let ApiError::Invalid(errors) = &self {
            let list: Vec<_> = errors
                .errors
                .iter()
                .map(|e| json!({"field": e.field, "reason": e.reason}))
                .collect();
            let first = errors.errors.first().map(ToString::to_string);
            problem["detail"] = json!(format!(
                "the change is not a valid config: {}",
                first.unwrap_or_default()
            ));
            problem["errors"] = json!(list);
        }
        let mut resp = reply::json_with(status, &problem);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tollgate-admin\""),
            );
        }
        resp
    }
}

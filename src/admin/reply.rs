//! Building admin responses: JSON, plain text, static assets. Every response carries the same
//! defensive headers (no caching of API data, no sniffing, no framing).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// Every admin response body is one buffer.
pub type Body = Full<Bytes>;

/// `value` as JSON with status 200.
pub fn json(value: &impl Serialize) -> Response<Body> {
    json_with(StatusCode::OK, value)
}

pub fn json_with(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    with(status, "application/json", Bytes::from(body))
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    with(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

/// A response with the admin plane's standard headers.
pub fn with(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

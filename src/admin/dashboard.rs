//! The dashboard: one page and its scripts, embedded in the binary and served from
//! `/admin/quotas`. Nothing is fetched from anywhere else (uPlot is vendored under
//! `dashboard/vendor/`). The page holds no secret: it asks for a token and sends it on each call.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::reply::{self, Body};

/// The page's own origin only; WebSocket to the same host; inline styles for uPlot's sizing.
const CSP: &str = "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; \
                   style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

macro_rules! assets {
    ($($path:literal => $file:literal, $mime:literal;)*) => {
        /// `(path under /admin/quotas, content type, bytes)`.
        const ASSETS: &[(&str, &str, &[u8])] = &[
            $(($path, $mime, include_bytes!(concat!("dashboard/", $file))),)*
        ];
    };
}

assets! {
    "" => "index.html", "text/html; charset=utf-8";
    "/" => "index.html", "text/html; charset=utf-8";
    "/app.css" => "app.css", "text/css; charset=utf-8";
    "/app.js" => "app.js", "text/javascript; charset=utf-8";
    "/ui.js" => "ui.js", "text/javascript; charset=utf-8";
    "/live.js" => "live.js", "text/javascript; charset=utf-8";
    "/rules.js" => "rules.js", "text/javascript; charset=utf-8";
    "/history.js" => "history.js", "text/javascript; charset=utf-8";
    "/vendor/uPlot.iife.min.js" => "vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8";
    "/vendor/uPlot.min.css" => "vendor/uPlot.min.css", "text/css; charset=utf-8";
}

/// The asset at `path` (which starts with `/admin/quotas`), or `None`.
pub fn asset(path: &str) -> Option<Response<Body>> {
    let rest = path.strip_prefix("/admin/quotas")?;
    let (_, mime, bytes) = ASSETS.iter().find(|(p, _, _)| *p == rest)?;
    let mut resp = reply::with(StatusCode::OK, mime, Bytes::from_static(bytes));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(resp)
}

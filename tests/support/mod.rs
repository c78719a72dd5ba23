//! Test support: a real upstream on 127.0.0.1:0, tollgate in-process or as the real binary, and
//! HTTP clients. Nothing is mocked; every test talks over loopback sockets.
#![allow(dead_code)]

pub mod db;
pub mod relay;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tollgate::limiter::{Clock, ManualClock};
use tollgate::{App, AppOptions};

pub type TestBody = BoxBody<Bytes, std::io::Error>;

// ---------------------------------------------------------------- upstream

/// A real HTTP server on 127.0.0.1:0 that tests proxy to.
///
/// - `/echo` (and anything unknown): 200, JSON `{method, path, headers}`, header `x-upstream: NAME`
/// - `/bytes?n=N`: streams N bytes in 64 KiB chunks
/// - `/count`: reads the request body as a stream and answers its length
/// - `/slow?ms=N`: answers after N ms
/// - `/ws`: answers 101 to an Upgrade request, then echoes bytes
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name_owned = name.to_string();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let name = name_owned.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| upstream_handle(name.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn query_num(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix(&format!("{key}=")))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn upstream_handle(
    name: String,
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let resp = match req.uri().path() {
        "/bytes" => {
            let n = query_num(&req, "n");
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(n, move |left| {
                let chunk = chunk.clone();
                async move {
                    (left > 0).then(|| {
                        let take = left.min(chunk.len() as u64);
                        (Ok(Frame::data(chunk.slice(..take as usize))), left - take)
                    })
                }
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        "/count" => {
            let mut body = req.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    total += data.len() as u64;
                }
            }
            Response::new(full(total.to_string()))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_num(&req, "ms"))).await;
            Response::new(full("slow done"))
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r.headers_mut()
                .insert("upgrade", req.headers()["upgrade"].clone());
            r
        }
        _ => {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            let body = serde_json::json!({
                "method": req.method().as_str(),
                "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                "headers": headers,
            });
            let mut r = Response::new(full(body.to_string()));
            r.headers_mut().insert("x-upstream", name.parse().unwrap());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            // A hop-by-hop header the proxy must strip on the way back.
            r.headers_mut()
                .insert("keep-alive", "timeout=5".parse().unwrap());
            r
        }
    };
    Ok(resp)
}

pub fn full(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// An address nothing listens on: a socket bound and never listening (a connection is
/// refused), kept open for the rest of the test process. Bound and closed, as before, its port
/// could be handed to another test's listener running in parallel.
pub async fn dead_addr() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    std::mem::forget(socket);
    addr
}

// ---------------------------------------------------------------- tollgate in-process

/// tollgate running in this process on 127.0.0.1:0 (proxy and admin), driven by a manual clock.
pub struct TestTollgate {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub app_shutdown: tollgate::shutdown::Shutdown,
    pub limiter: Arc<tollgate::limiter::Limiter>,
    pub reloader: Option<Arc<tollgate::config::reload::Reloader>>,
    pub done: tokio::task::JoinHandle<()>,
}

/// Prefix for inline configs: both listeners on port 0, usage kept in memory only.
pub const LISTEN_ANY: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[database]\nenabled = false\n";

impl TestTollgate {
    /// Start from inline TOML (which must not set [server]/[admin]; `LISTEN_ANY` is prepended).
    pub async fn start(toml: &str) -> TestTollgate {
        Self::start_with(toml, None).await
    }

    /// As `start`, reloading from `path` (whose contents must equal LISTEN_ANY + toml).
    pub async fn start_with(toml: &str, path: Option<&Path>) -> TestTollgate {
        Self::from_text(&format!("{LISTEN_ANY}{toml}"), path).await
    }

    /// Start from a whole config text (which must bind 127.0.0.1:0 itself).
    pub async fn from_text(text: &str, path: Option<&Path>) -> TestTollgate {
        Self::from_text_at(text, path, 36_000_000).await
    }

    /// As `from_text`, with the clock starting at `start_ms` (Unix ms): what startup
    /// rehydration sees as now.
    pub async fn from_text_at(text: &str, path: Option<&Path>, start_ms: u64) -> TestTollgate {
        let metrics = tollgate::telemetry::Metrics::new();
        let config =
            tollgate::config::load(text, "test", &metrics).unwrap_or_else(|e| panic!("{e}"));
        let clock = Arc::new(ManualClock::new(start_ms));
        let mut opts = AppOptions::new(metrics);
        opts.clock = clock.clone() as Arc<dyn Clock>;
        opts.config_path = path.map(Path::to_path_buf);
        let app = App::build(config, opts).await.unwrap();
        TestTollgate {
            proxy: app.proxy_addr(),
            admin: app.admin_addr(),
            clock,
            app_shutdown: app.shutdown(),
            limiter: app.limiter(),
            reloader: app.reloader(),
            done: tokio::spawn(async move {
                app.run().await.unwrap();
            }),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub async fn stop(self) {
        self.app_shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.done).await;
    }
}

// ---------------------------------------------------------------- clients

/// An HTTP/1.1 client (pooled keep-alive).
pub fn h1_client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// An h2c client with prior knowledge.
pub fn h2c_client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A finished response: status, headers, whole body.
pub struct Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// GET `url` with extra headers over HTTP/1.1.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    send(&h1_client(), "GET", url, headers, empty()).await
}

pub async fn send(
    client: &Client<HttpConnector, TestBody>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Got {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(body).unwrap())
        .await
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// The admin /metrics text.
pub async fn metrics_text(t: &TestTollgate) -> String {
    get(&t.admin_url("/metrics"), &[]).await.text()
}

/// The value of one metric line (name with labels exactly as rendered), or None.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .trim()
            .strip_prefix("")?
            .parse()
            .ok()
    })
}

// ---------------------------------------------------------------- the real binary

/// The tollgate binary, started on a config file, with its bound addresses read from its log.
pub struct Binary {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// Reads stdout to its end (so the child never blocks on a full pipe) and keeps the lines.
    log: Option<std::thread::JoinHandle<Vec<String>>>,
    /// While set, the reader stops reading (after the line it is waiting for), as a stuck
    /// consumer of stdout would: the pipe fills and the child's writes block.
    log_paused: Arc<std::sync::atomic::AtomicBool>,
}

impl Binary {
    pub fn start(config: &Path, extra_args: &[&str]) -> Binary {
        Self::start_env(config, extra_args, &[])
    }

    /// As `start`, with extra environment variables.
    pub fn start_env(config: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Binary {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        // A relative sqlite_path lands beside the config, not in the source tree.
        if let Some(dir) = config.parent().filter(|d| d.is_absolute()) {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .arg("--config")
            .arg(config)
            .env_remove("DATABASE_URL")
            .args(["--log-format", "json"])
            .args(extra_args)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tollgate");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (proxy, admin) = loop {
            let line = lines
                .next()
                .expect("tollgate exited before it was ready")
                .unwrap();
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] == "tollgate ready" {
                break (
                    v["proxy"].as_str().unwrap().parse().unwrap(),
                    v["admin"].as_str().unwrap().parse().unwrap(),
                );
            }
        };
        let log_paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let paused = log_paused.clone();
        let log = std::thread::spawn(move || {
            let mut kept = Vec::new();
            loop {
                while paused.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                match lines.next() {
                    Some(Ok(line)) => kept.push(line),
                    _ => return kept,
                }
            }
        });
        Binary {
            child,
            proxy,
            admin,
            log: Some(log),
            log_paused,
        }
    }

    /// Stops or resumes reading the child's stdout.
    pub fn pause_log(&self, paused: bool) {
        self.log_paused
            .store(paused, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Every stdout line after "tollgate ready", once the process has exited and closed it.
    pub fn log_to_the_end(&mut self) -> Vec<String> {
        self.log
            .take()
            .map(|reader| reader.join().unwrap())
            .unwrap_or_default()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write a config file, `LISTEN_ANY` first, into a fresh temp dir and return both.
pub fn config_file(toml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    config_file_as_is(&format!("{LISTEN_ANY}{toml}"))
}

/// Write `toml` as it is into a fresh temp dir as `tollgate.toml` and return both.
pub fn config_file_as_is(toml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, toml).unwrap();
    (dir, path)
}

// ---------------------------------------------------------------- protocol and failure helpers

/// Like `TestTollgate::start`, with extra `[server]` keys (e.g. `header_timeout = "300ms"`).
pub async fn start_with_server(server_keys: &str, toml: &str) -> TestTollgate {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_keys}\n[admin]\nlisten = \"127.0.0.1:0\"\n[database]\nenabled = false\n{toml}"
    );
    TestTollgate::from_text(&text, None).await
}

/// A bound on every network wait, so a broken proxy fails a test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Read from `stream` until the end of a response head (`\r\n\r\n`) or EOF; returns the head.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("timed out reading a response head")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Write `raw` on a fresh connection to `addr` and return the response head.
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    read_head(&mut s).await
}

/// A body of `total` bytes made 64 KiB at a time, so the test never holds all of it.
pub fn streamed_body(total: u64) -> TestBody {
    let chunk = Bytes::from(vec![b'y'; 64 * 1024]);
    let stream = futures_util::stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let take = left.min(chunk.len() as u64);
                (
                    Ok::<_, std::io::Error>(Frame::data(chunk.slice(..take as usize))),
                    left - take,
                )
            })
        }
    });
    StreamBody::new(stream).boxed()
}

/// Resident set size of a process in KiB, from /proc (usable from a sampling thread).
pub fn rss_kib_of(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A throwaway PKI: a CA and a server certificate for localhost and 127.0.0.1, as PEM files.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_file: std::path::PathBuf,
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub ca_der: rustls_pki_types::CertificateDer<'static>,
    pub cert_der: rustls_pki_types::CertificateDer<'static>,
    pub key_der: rustls_pki_types::PrivateKeyDer<'static>,
}

impl TestPki {
    pub fn generate() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tollgate test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, &ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (ca_file, cert_file, key_file) = (
            dir.path().join("ca.pem"),
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
        );
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(&cert_file, leaf_cert.pem()).unwrap();
        std::fs::write(&key_file, leaf_key.serialize_pem()).unwrap();
        TestPki {
            ca_der: ca_cert.der().clone(),
            cert_der: leaf_cert.der().clone(),
            key_der: rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            dir,
            ca_file,
            cert_file,
            key_file,
        }
    }

    /// A rustls client trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A rustls server with this PKI's certificate, offering `alpn`.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![self.cert_der.clone()], self.key_der.clone_key())
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// The same upstream as [`Upstream`], over TLS with `pki`'s certificate.
pub async fn start_tls_upstream(name: &str, pki: &TestPki) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(&[b"http/1.1"]));
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, name) = (acceptor.clone(), name.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |req| upstream_handle(name.clone(), req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

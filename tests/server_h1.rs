//! The lean HTTP/1.1 server path (bodyless HTTP/1.1 requests read and answered without hyper)
//! from a raw client socket: pipelined requests in order, the hand-over to hyper when a request
//! has a body, `Connection: close`, HEAD answers with a length and no body, bodies of unknown
//! length re-chunked, a client that leaves cancelling the request it left behind, and heads
//! read whole after a connection rested, and a resting connection that ends when its client
//! leaves or on a graceful stop.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::*;

/// One response read from a raw socket: status, lowercased head fields, and the body (by
/// Content-Length or chunked; none for a HEAD request).
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads responses off one connection, keeping bytes that belong to the next.
struct Reader {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(PATIENCE, self.s.read(&mut chunk))
            .await
            .expect("timed out reading")
            .unwrap();
        assert!(
            n > 0,
            "closed early; have {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill().await;
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(at + 2).await;
                return String::from_utf8_lossy(&line[..at]).into_owned();
            }
            self.fill().await;
        }
    }

    async fn answer(&mut self, to_head: bool) -> Answer {
        let status_line = self.line().await;
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut fields = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').unwrap();
            fields.push((n.to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut a = Answer {
            status,
            fields,
            body: Vec::new(),
        };
        if to_head || status == 204 || status == 304 {
            return a;
        }
        if a.field("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).unwrap();
                if size == 0 {
                    assert_eq!(self.line().await, "", "no trailers expected");
                    break;
                }
                a.body.extend(self.take(size).await);
                assert_eq!(self.line().await, "");
            }
        } else {
            let len = a
                .field("content-length")
                .expect("a length")
                .parse()
                .unwrap();
            a.body = self.take(len).await;
        }
        a
    }

    /// Asserts the proxy ends the connection with nothing more sent, buffered bytes included.
    async fn assert_ended(&mut self, after: &str) {
        let mut rest = Vec::new();
        tokio::time::timeout(PATIENCE, self.s.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("the connection did not end after {after}"))
            .unwrap();
        assert!(
            self.buf.is_empty() && rest.is_empty(),
            "after {after}: {rest:?}"
        );
    }
}

async fn connect(t: &TestTollgate) -> Reader {
    Reader {
        s: TcpStream::connect(t.proxy).await.unwrap(),
        buf: Vec::new(),
    }
}

/// The support upstream, and tollgate in front of it.
async fn behind_tollgate() -> (Upstream, TestTollgate) {
    let up = Upstream::start("a").await;
    let toml = format!(
        "[[routes]]\nname = \"up\"\nupstreams = [\"{}\"]\n",
        up.url()
    );
    (up, TestTollgate::start(&toml).await)
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

/// A connection that has been answered one request (`/echo?n=1`).
async fn served_once(t: &TestTollgate) -> Reader {
    let mut c = connect(t).await;
    c.s.write_all(b"GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(c.answer(false).await.status, 200);
    c
}

/// Waits (up to `PATIENCE`) for the metric `name` to read `want`, and asserts it does.
async fn metric_reaches(t: &TestTollgate, name: &str, want: f64) {
    let read = || async { metric_value(&metrics_text(t).await, name) };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while read().await != Some(want) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read().await, Some(want), "{name}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_a_body_hands_over_to_hyper() {
    let (_up, t) = behind_tollgate().await;
    let mut c = connect(&t).await;
    c.s.write_all(
        b"GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /echo?n=3 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let first = c.answer(false).await;
    assert_eq!(first.status, 200);
    assert_eq!(json(&first.body)["path"], "/echo?n=1");
    assert!(first.field("date").is_some(), "a Date is always sent");
    let head = c.answer(true).await;
    assert_eq!(head.status, 200);
    let len: usize = head.field("content-length").unwrap().parse().unwrap();
    assert!(len > 0, "HEAD keeps the length a GET would have");
    let posted = c.answer(false).await;
    assert_eq!(posted.body, b"5", "hyper read the body after the hand-over");
    let last = c.answer(false).await;
    assert_eq!(json(&last.body)["path"], "/echo?n=3");
    assert!(c.buf.is_empty(), "no stray bytes: {:?}", c.buf);
    t.stop().await;
}

#[tokio::test]
async fn a_half_close_behind_pipelined_requests_still_gets_the_answer_in_flight() {
    // Two requests and the client's FIN while the first waits on the upstream. A FIN behind
    // buffered bytes is not a client that left: the first is answered. The second then waits on
    // a socket at EOF and is dropped, as hyper (without half_close) and nginx drop it.
    let (_up, t) = behind_tollgate().await;
    let mut c = connect(&t).await;
    c.s.write_all(
        b"GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    c.s.shutdown().await.unwrap();
    let first = c.answer(false).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, b"slow done");
    c.assert_ended("the answer in flight").await;
    t.stop().await;
}

#[tokio::test]
async fn connection_close_is_answered_with_close_and_the_connection_ends() {
    // Asked by the client, or said by the answer itself (a direct response configured so).
    let t = TestTollgate::start(
        "[[routes]]\nname = \"bye\"\npath_prefix = \"/bye\"\n[routes.direct]\nbody = \"bye\"\n\
         [routes.direct.headers]\nConnection = \"close\"\n\
         [[routes]]\nname = \"ok\"\n[routes.direct]\nbody = \"ok\"\n",
    )
    .await;
    for (request, body) in [
        (
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            &b"ok"[..],
        ),
        (b"GET /bye HTTP/1.1\r\nHost: x\r\n\r\n", b"bye"),
    ] {
        let mut c = connect(&t).await;
        c.s.write_all(request).await.unwrap();
        let a = c.answer(false).await;
        assert_eq!((a.status, a.body.as_slice()), (200, body));
        assert_eq!(a.field("connection"), Some("close"));
        c.assert_ended("the answer").await;
    }
    t.stop().await;
}

#[tokio::test]
async fn answers_to_head_including_a_429_carry_their_length_and_no_body() {
    let t = TestTollgate::start(
        "[[rules]]\nname = \"one\"\nkey = \"ip\"\nlimits = [\"2/m\"]\n\
         [[routes]]\nname = \"ok\"\nrules = [\"one\"]\n[routes.direct]\nbody = \"hello\"\n",
    )
    .await;
    let mut c = connect(&t).await;
    for (method, status, len, body) in [
        ("HEAD", 200, "5", &b""[..]),
        ("GET", 200, "5", &b"hello"[..]),
        ("HEAD", 429, "", &b""[..]),
        ("GET", 429, "", &b""[..]),
    ] {
        c.s.write_all(format!("{method} / HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let a = c.answer(method == "HEAD").await;
        assert_eq!(a.status, status, "{method}");
        if status == 200 {
            assert_eq!(a.field("content-length"), Some(len), "{method}");
            assert_eq!(a.body, body, "{method}");
        } else {
            let len: usize = a.field("content-length").unwrap().parse().unwrap();
            assert!(len > 0, "a 429 has a JSON body, also when not sent");
            assert!(a.field("retry-after").is_some());
            if method == "GET" {
                assert_eq!(json(&a.body)["error"], "rate_limited");
            }
        }
    }
    // A 429 to a client that asks to close says so, and the connection ends after it.
    c.s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let a = c.answer(false).await;
    assert_eq!((a.status, a.field("connection")), (429, Some("close")));
    c.assert_ended("the 429").await;
    t.stop().await;
}

#[tokio::test]
async fn a_body_of_unknown_length_is_chunked_and_the_connection_goes_on() {
    let (_up, t) = behind_tollgate().await;
    let mut c = connect(&t).await;
    for n in [100_000usize, 1, 0] {
        c.s.write_all(format!("GET /bytes?n={n} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let a = c.answer(false).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.field("transfer-encoding"), Some("chunked"), "n={n}");
        assert_eq!(a.body.len(), n);
    }
    t.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_request_it_left_waiting() {
    // A raw upstream that never answers and reports when the proxy hangs up on it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (hung_up, mut on_hang_up) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let hung_up = hung_up.clone();
            tokio::spawn(async move {
                let _head = read_head(&mut s).await;
                let mut buf = [0u8; 64];
                let eof = matches!(s.read(&mut buf).await, Ok(0) | Err(_));
                let _ = hung_up.send(eof);
            });
        }
    });
    let t = TestTollgate::start(&format!(
        "[upstream]\nresponse_timeout = \"60s\"\n\
         [[routes]]\nname = \"ok\"\npath_prefix = \"/ok\"\n[routes.direct]\nbody = \"ok\"\n\
         [[routes]]\nname = \"up\"\nupstreams = [\"{url}\"]\n"
    ))
    .await;
    let mut s = TcpStream::connect(t.proxy).await.unwrap();
    s.write_all(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    let eof = tokio::time::timeout(PATIENCE, on_hang_up.recv())
        .await
        .expect("the upstream request was not cancelled when its client left");
    assert_eq!(eof, Some(true));
    let r = get(&t.url("/ok"), &[]).await;
    assert_eq!(r.status, 200, "the proxy serves on");
    t.stop().await;
}

/// A connection that waits past `REST_AFTER` (2 s) for its next head gives back its buffers and
/// reads that head through a 1 KiB buffer on the stack: a head several times longer still
/// arrives whole. A connection with half a head buffered when the rest comes keeps it (and its
/// buffers: `tollgate_connections_rested_total` counts one rest), and the head completes.
#[tokio::test]
async fn a_connection_that_rested_still_reads_long_and_split_heads_whole() {
    let (_up, t) = behind_tollgate().await;
    let (mut rested, mut split) = (served_once(&t).await, served_once(&t).await);
    split
        .s
        .write_all(b"GET /echo?n=2 HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // The watch looks 2 s after the connection began and again 2 s into the wait.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    // One rest: `rested` gave back its buffers; `split`, with half a head buffered, kept them.
    metric_reaches(&t, "tollgate_connections_rested_total", 1.0).await;
    split.s.write_all(b"st: x\r\n\r\n").await.unwrap();
    let answer = split.answer(false).await;
    assert_eq!(json(&answer.body)["path"], "/echo?n=2");
    let long = "v".repeat(6000);
    let head = format!("GET /echo?n=3 HTTP/1.1\r\nHost: x\r\nX-Long: {long}\r\n\r\n");
    rested.s.write_all(head.as_bytes()).await.unwrap();
    let answer = rested.answer(false).await;
    assert_eq!(answer.status, 200);
    let echoed = json(&answer.body);
    assert_eq!(echoed["path"], "/echo?n=3");
    assert!(
        echoed["headers"]["x-long"] == long.as_str(),
        "the long field arrived whole"
    );
    // And on: the next request is served as before.
    rested
        .s
        .write_all(b"GET /echo?n=4 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(json(&rested.answer(false).await.body)["path"], "/echo?n=4");
    t.stop().await;
}

/// A resting connection (its request state given back, waiting for bytes through the stack)
/// still ends when its client closes, which the open-connections gauge shows, and ends at once
/// on a graceful stop: the drain does not wait for it (`drain_timeout` is 30 s here).
#[tokio::test]
async fn a_resting_connection_ends_when_its_client_leaves_and_on_a_graceful_stop() {
    let (_up, t) = behind_tollgate().await;
    let (mut stays, leaves) = (served_once(&t).await, served_once(&t).await);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    metric_reaches(&t, "tollgate_connections_rested_total", 2.0).await;
    metric_reaches(&t, "tollgate_open_connections", 2.0).await;
    drop(leaves);
    metric_reaches(&t, "tollgate_open_connections", 1.0).await;
    let started = std::time::Instant::now();
    t.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the drain waited {took:?}");
    stays.assert_ended("a graceful stop").await;
}

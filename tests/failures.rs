//! How the proxy fails: oversized or malformed heads, dead and slow upstreams, slowloris and idle
//! clients, panics, aborted requests, and the connection cap. Each failure is answered or closed,
//! counted where it should be, and never takes other connections down with it.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

/// A bound for things that must happen "soon": liveness, not performance.
const SOON: Duration = Duration::from_secs(5);

const DIRECT: &str = "[[routes]]\nname = \"ok\"\n[routes.direct]\nbody = \"ok\"\n";

fn status_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

/// Wait until the peer closes: Ok(bytes read before EOF) or Err on timeout.
async fn until_closed(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, ()> {
    let mut got = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .map_err(|_| ())?;
    Ok(got)
}

#[tokio::test]
async fn oversized_heads_and_too_many_headers_get_431() {
    let t = start_with_server("max_header_bytes = 8192\nmax_headers = 10", DIRECT).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let head = raw_exchange(t.proxy, big.as_bytes()).await;
    assert_eq!(status_of(&head), "431", "{head}");

    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..12 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let head = raw_exchange(t.proxy, many.as_bytes()).await;
    assert_eq!(status_of(&head), "431", "{head}");

    let fine = raw_exchange(t.proxy, b"GET / HTTP/1.1\r\nHost: x\r\nx-a: 1\r\n\r\n").await;
    assert_eq!(status_of(&fine), "200", "{fine}");
    t.stop().await;
}

#[tokio::test]
async fn dead_and_slow_upstreams_answer_json_502_and_504_and_are_counted() {
    let dead = dead_addr().await;
    let up = Upstream::start("a").await;
    let t = TestTollgate::start(&format!(
        r#"
[upstream]
response_timeout = "200ms"

[[routes]]
name = "dead"
path_prefix = "/dead"
upstreams = ["http://{dead}"]

[[routes]]
name = "slow"
path_prefix = "/slow"
upstreams = ["{}"]
"#,
        up.url()
    ))
    .await;
    let r = get(&t.url("/dead"), &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["error"], "bad_gateway");
    assert!(
        !r.text().contains(&dead.port().to_string()),
        "the error body must not leak the upstream address: {}",
        r.text()
    );

    let r = get(&t.url("/slow?ms=2000"), &[]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["error"], "gateway_timeout");

    let m = metrics_text(&t).await;
    for (series, want) in [
        (
            r#"tollgate_upstream_errors_total{route="dead",kind="connect"}"#,
            1.0,
        ),
        (
            r#"tollgate_upstream_errors_total{route="slow",kind="timeout"}"#,
            1.0,
        ),
        (
            r#"tollgate_requests_total{route="dead",decision="error",status_class="5xx"}"#,
            1.0,
        ),
        (
            r#"tollgate_requests_total{route="slow",decision="error",status_class="5xx"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric_value(&m, series), Some(want), "{series} in\n{m}");
    }
    t.stop().await;
}

/// With `response_timeout` at least `header_timeout`, a lean HTTP/1.1 connection's watch keeps
/// the response deadline instead of a timer per forward. A forward past it gets its 504 near the
/// deadline, one within it but longer than `header_timeout` is answered, and the next request on
/// the same connection is not caught by the last one's deadline.
#[tokio::test]
async fn a_response_deadline_kept_by_the_connections_watch_answers_504_on_time() {
    let up = Upstream::start("a").await;
    let t = start_with_server(
        "header_timeout = \"300ms\"",
        &format!(
            "[upstream]\nresponse_timeout = \"900ms\"\n[[routes]]\nname = \"slow\"\nupstreams = [\"{}\"]\n",
            up.url()
        ),
    )
    .await;
    let client = h1_client();
    // Longer than header_timeout, within response_timeout: answered.
    let r = send(&client, "GET", &t.url("/slow?ms=600"), &[], empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow done");
    // Past response_timeout: a 504 near the deadline, well before the upstream would answer.
    let started = std::time::Instant::now();
    let r = send(&client, "GET", &t.url("/slow?ms=5000"), &[], empty()).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"], "gateway_timeout");
    assert!(
        // Under 1.2 s: a watch that overslept to its next head look (300 ms on) would miss.
        took >= Duration::from_millis(850) && took < Duration::from_millis(1190),
        "the 504 came after {took:?}, for a 900 ms deadline"
    );
    // The same connection goes on, and its next forward starts a deadline of its own.
    let r = send(&client, "GET", &t.url("/slow?ms=600"), &[], empty()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = metrics_text(&t).await;
    assert_eq!(
        metric_value(&m, "tollgate_connections_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            r#"tollgate_upstream_errors_total{route="slow",kind="timeout"}"#
        ),
        Some(1.0)
    );
    t.stop().await;
}

#[tokio::test]
async fn a_malformed_request_line_gets_400_and_others_are_still_served() {
    let t = TestTollgate::start(DIRECT).await;
    let mut bad = TcpStream::connect(t.proxy).await.unwrap();
    bad.write_all(b"THIS IS NOT HTTP\r\n\r\n").await.unwrap();
    let head = read_head(&mut bad).await;
    assert_eq!(status_of(&head), "400", "{head}");
    let r = get(&t.url("/"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
    t.stop().await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_after_header_timeout() {
    let t = start_with_server("header_timeout = \"300ms\"", DIRECT).await;
    let mut s = TcpStream::connect(t.proxy).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let got = until_closed(&mut s, SOON)
        .await
        .expect("a half-sent head kept its connection open");
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 408"),
        "expected EOF or 408, got {text:?}"
    );
    assert_eq!(get(&t.url("/"), &[]).await.status, 200);
    t.stop().await;
}

#[tokio::test]
async fn every_later_head_has_header_timeout_too_but_a_slow_answer_does_not() {
    let up = Upstream::start("a").await;
    let routes = format!(
        "[[routes]]\nname = \"up\"\nupstreams = [\"{}\"]\n",
        up.url()
    );
    let t = start_with_server("header_timeout = \"300ms\"", &routes).await;
    let mut s = TcpStream::connect(t.proxy).await.unwrap();
    // An answer that takes longer than header_timeout: a request in progress, not a head wait.
    s.write_all(b"GET /slow?ms=700 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), "200", "{head}");
    let mut body = [0u8; 9];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"slow done");
    // The second head trickles in, a byte every 50 ms: it is cut off about 300 ms after the
    // first response ended, though bytes keep arriving.
    let trickle =
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut sent = 0;
    for b in trickle {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sent < trickle.len(),
        "the whole trickle ({sent} bytes) went in: the connection was not cut off"
    );
    let got = until_closed(&mut s, SOON)
        .await
        .expect("a trickled second head kept its connection open");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(get(&t.url("/"), &[]).await.status, 200);
    t.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let t = start_with_server("idle_timeout = \"300ms\"", DIRECT).await;
    let mut s = TcpStream::connect(t.proxy).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), "200", "{head}");
    let mut ok = [0u8; 2];
    s.read_exact(&mut ok).await.unwrap();
    assert_eq!(&ok, b"ok");
    let rest = until_closed(&mut s, SOON)
        .await
        .expect("an idle connection stayed open");
    assert!(rest.is_empty(), "{rest:?}");
    t.stop().await;
}

#[tokio::test]
async fn a_panic_in_the_decision_or_the_forward_becomes_a_counted_500() {
    use tollgate::proxy::service::Answer;
    let metrics = tollgate::telemetry::Metrics::new();
    let conn = tollgate::proxy::metrics::ConnMetrics::new(&metrics);
    let resp = tollgate::proxy::service::guarded(conn.panics.clone(), async {
        panic!("handler bug");
    })
    .await
    .into_response();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "internal");
    assert!(
        !String::from_utf8_lossy(&body).contains("handler bug"),
        "the panic message must not leak"
    );
    let ok = tollgate::proxy::service::guarded(conn.panics.clone(), async {
        let resp = tollgate::proxy::respond::ProxyError::NoRoute.into_response();
        Answer::Response(Box::new(resp))
    })
    .await
    .into_response();
    assert_eq!(ok.status(), 404, "a handler that returns is passed through");
    // The synchronous part (routing and the limit decision) is guarded the same way.
    use tollgate::proxy::service::{guarded_now, Handled};
    let Handled::Ready(now) = guarded_now(&conn.panics, || panic!("decision bug")) else {
        panic!("a panicking decision must be answered at once");
    };
    assert_eq!(now.status(), 500);
    let Handled::Ready(passed) = guarded_now(&conn.panics, || {
        Handled::Ready(tollgate::proxy::respond::ProxyError::NoRoute.into_response())
    }) else {
        unreachable!()
    };
    assert_eq!(passed.status(), 404);
    assert_eq!(
        metric_value(&metrics.render(), "tollgate_connection_panics_total"),
        Some(2.0)
    );
}

#[tokio::test]
async fn clients_that_vanish_mid_request_do_not_hurt_the_server() {
    let up = Upstream::start("a").await;
    let t = TestTollgate::start(&format!(
        "[[routes]]\nname = \"up\"\nupstreams = [\"{}\"]\n",
        up.url()
    ))
    .await;
    for abort_with_reset in [false, true] {
        let mut s = TcpStream::connect(t.proxy).await.unwrap();
        s.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            .await
            .unwrap();
        s.write_all(&[b'z'; 64 * 1024]).await.unwrap();
        if abort_with_reset {
            // SO_LINGER 0: close sends RST instead of FIN.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(s);
    }
    let r = get(&t.url("/echo"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("a"));
    let r = send(&h1_client(), "POST", &t.url("/count"), &[], full("12345")).await;
    assert_eq!(r.text(), "5");
    t.stop().await;
}

#[tokio::test]
async fn past_max_connections_new_connections_wait_instead_of_failing() {
    let t = start_with_server("max_connections = 2", DIRECT).await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        // A served request proves the connection was accepted and holds a slot.
        let mut s = TcpStream::connect(t.proxy).await.unwrap();
        s.write_all(request).await.unwrap();
        assert_eq!(status_of(&read_head(&mut s).await), "200");
        let mut ok = [0u8; 2];
        s.read_exact(&mut ok).await.unwrap();
        held.push(s);
    }
    let mut third = TcpStream::connect(t.proxy).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut first)).await;
    assert!(
        early.is_err(),
        "a third connection was served while two held the cap"
    );
    drop(held.pop());
    let head = read_head(&mut third).await;
    assert_eq!(status_of(&head), "200", "queued connection: {head}");
    t.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_is_not_mistaken_for_an_idle_connection() {
    let up = Upstream::start("a").await;
    let t = start_with_server(
        "idle_timeout = \"300ms\"",
        &format!(
            "[[routes]]\nname = \"up\"\nupstreams = [\"{}\"]\n",
            up.url()
        ),
    )
    .await;
    // No bytes move either way while the upstream thinks, but a request is in flight.
    let r = tokio::time::timeout(PATIENCE, get(&t.url("/slow?ms=1500"), &[]))
        .await
        .expect("request hung");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow done");
    t.stop().await;
}

#[tokio::test]
async fn upgraded_tunnels_hold_their_connection_slot() {
    let up = Upstream::start("a").await;
    let t = start_with_server(
        "max_connections = 1",
        &format!(
            "[[routes]]\nname = \"up\"\nupstreams = [\"{}\"]\n",
            up.url()
        ),
    )
    .await;
    let mut tunnel = TcpStream::connect(t.proxy).await.unwrap();
    tunnel
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_head(&mut tunnel).await), "101");
    tunnel.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(PATIENCE, tunnel.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();

    let mut second = TcpStream::connect(t.proxy).await.unwrap();
    second
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut first)).await;
    assert!(
        early.is_err(),
        "a second connection was served while a tunnel held the only slot"
    );
    drop(tunnel);
    let head = read_head(&mut second).await;
    assert_eq!(status_of(&head), "200", "{head}");
    t.stop().await;
}

#[tokio::test]
async fn a_stalled_partial_h2_preface_is_cut_off_after_header_timeout() {
    let t = start_with_server("header_timeout = \"300ms\"", DIRECT).await;
    let mut s = TcpStream::connect(t.proxy).await.unwrap();
    // A prefix of "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": neither HTTP/1 nor HTTP/2 can be decided yet.
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    until_closed(&mut s, SOON)
        .await
        .expect("a half-sent HTTP/2 preface kept its connection open past header_timeout");
    t.stop().await;
}

//! The lean upstream HTTP/1 client (bodyless requests to plain http upstreams) against raw TCP
//! upstreams that answer exactly the bytes each test scripts: chunked bodies split at awkward
//! places, bodies delimited by close, 1xx heads, HEAD, `Connection: close`, broken heads, and
//! which requests are sent again after a reused connection fails.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use support::*;

/// What a scripted upstream does with the n-th request head on a connection.
enum Act {
    /// Write these pieces, pausing between them so they arrive as separate reads.
    Reply(Vec<&'static [u8]>),
    /// Write, then close the connection.
    ReplyAndClose(&'static [u8]),
    /// Close without answering.
    Close,
}

struct Scripted {
    url: String,
    accepted: Arc<AtomicUsize>,
    heads: Arc<AtomicUsize>,
}

/// A raw HTTP/1.1 upstream: for the n-th head on each connection (from 0), `script(n, head)`.
async fn scripted(script: fn(usize, &str) -> Act) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (accepted, heads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, h) = (accepted.clone(), heads.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    let head = read_head(&mut s).await;
                    if head.is_empty() {
                        return;
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    match script(n, &head) {
                        Act::Reply(pieces) => {
                            for p in pieces {
                                if s.write_all(p).await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                        Act::ReplyAndClose(bytes) => {
                            let _ = s.write_all(bytes).await;
                            return;
                        }
                        Act::Close => return,
                    }
                }
            });
        }
    });
    Scripted {
        url,
        accepted,
        heads,
    }
}

async fn proxy(up: &Scripted) -> TestTollgate {
    TestTollgate::start(&format!(
        "[[routes]]\nname = \"up\"\nupstreams = [{:?}]\n",
        up.url
    ))
    .await
}

#[tokio::test]
async fn chunked_bodies_split_anywhere_are_decoded_and_the_connection_reused() {
    let up = scripted(|_, _| {
        Act::Reply(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-",
            b"encoding: chunked\r\nx-up: 1\r\n\r\n5;ext=",
            b"1\r\nhel",
            b"lo\r",
            b"\n6\r\n world\r\n0\r\nx-sum:",
            b" 1\r\n\r\n",
        ])
    })
    .await;
    let t = proxy(&up).await;
    let client = h1_client();
    for i in 0..3 {
        let r = send(&client, "GET", &t.url("/"), &[], empty()).await;
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (200, "hello world".into()),
            "{i}"
        );
        assert_eq!(r.header("x-up"), Some("1"));
        // Hop-by-hop framing is the proxy's own business on the client side.
        assert_eq!(r.header("content-length"), None);
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_body_delimited_by_close_arrives_whole_and_its_connection_is_not_reused() {
    let up = scripted(|_, _| Act::ReplyAndClose(b"HTTP/1.1 200 OK\r\nx-a: b\r\n\r\nuntil the end"))
        .await;
    let t = proxy(&up).await;
    let client = h1_client();
    for _ in 0..2 {
        let r = send(&client, "GET", &t.url("/"), &[], empty()).await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "until the end".into()));
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    t.stop().await;
}

#[tokio::test]
async fn informational_heads_are_skipped_and_head_and_304_read_no_body() {
    let up = scripted(|_, head| {
        if head.starts_with("HEAD") {
            // A HEAD answer announces a length it does not send.
            Act::Reply(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"])
        } else if head.contains("if-none-match") {
            Act::Reply(vec![
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
            ])
        } else {
            Act::Reply(vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ])
        }
    })
    .await;
    let t = proxy(&up).await;
    let client = h1_client();
    let r = send(&client, "HEAD", &t.url("/"), &[], empty()).await;
    assert_eq!(
        (r.status.as_u16(), r.header("content-length")),
        (200, Some("5"))
    );
    let r = send(
        &client,
        "GET",
        &t.url("/"),
        &[("if-none-match", "x")],
        empty(),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.text()), (304, String::new()));
    let r = send(&client, "GET", &t.url("/"), &[], empty()).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "ok".into()));
    assert_eq!(
        r.header("link"),
        None,
        "1xx fields are not merged into the response"
    );
    // Had the HEAD or 304 been read as carrying 5 body bytes, the next head would be lost.
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    t.stop().await;
}

#[tokio::test]
async fn connection_close_and_http_1_0_answers_are_not_reused() {
    // The upstream keeps each connection open: the proxy must go by the head alone.
    let up = scripted(|_, head| {
        if head.contains("x-old") {
            Act::Reply(vec![b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"])
        } else {
            Act::Reply(vec![
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            ])
        }
    })
    .await;
    let t = proxy(&up).await;
    let client = h1_client();
    for old in ["", "", "1", "1"] {
        let headers: &[(&str, &str)] = if old.is_empty() {
            &[]
        } else {
            &[("x-old", "1")]
        };
        let r = send(&client, "GET", &t.url("/"), headers, empty()).await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "ok".into()));
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
    t.stop().await;
}

#[tokio::test]
async fn broken_upstream_heads_get_502_and_the_proxy_serves_on() {
    let up = scripted(|_, head| match head.split(' ').nth(1).unwrap_or("") {
        "/conflict" => Act::Reply(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        ]),
        "/garbage" => Act::Reply(vec![b"HTTP/1.1 abc\r\n\r\n"]),
        "/101" => Act::Reply(vec![
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
        ]),
        "/huge" => Act::Reply(vec![b"HTTP/1.1 200 OK\r\n", HUGE_FIELD]),
        "/short" => Act::ReplyAndClose(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"),
        _ => Act::Reply(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]),
    })
    .await;
    let t = proxy(&up).await;
    for path in ["/conflict", "/garbage", "/101", "/huge"] {
        let r = get(&t.url(path), &[]).await;
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        let r = get(&t.url("/"), &[]).await;
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (200, "ok".into()),
            "after {path}"
        );
    }
    // A body cut short: the client sees a cut (hyper may not even have flushed the head when
    // the body fails), never a whole response.
    let whole = match h1_client()
        .request(Request::get(t.url("/short")).body(empty()).unwrap())
        .await
    {
        Ok(resp) => resp.into_body().collect().await.is_ok(),
        Err(_) => false,
    };
    assert!(!whole, "a cut body is not passed off as whole");
    let r = get(&t.url("/"), &[]).await;
    assert_eq!(r.status, 200);
    t.stop().await;
}

/// A header field longer than the 64 KiB head limit, never ended.
static HUGE_FIELD: &[u8] = &[b'a'; 70 * 1024];

#[tokio::test]
async fn only_idempotent_requests_are_sent_again_when_a_reused_connection_dies() {
    // Each connection answers its first request, then takes the second and closes unanswered.
    let script = |n, _: &str| match n {
        0 => Act::Reply(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]),
        _ => Act::Close,
    };
    for (method, status, heads) in [("GET", 200, 3), ("DELETE", 200, 3), ("POST", 502, 2)] {
        let up = scripted(script).await;
        let t = proxy(&up).await;
        let client = h1_client();
        assert_eq!(
            send(&client, method, &t.url("/"), &[], empty())
                .await
                .status,
            200
        );
        let r = send(&client, method, &t.url("/"), &[], empty()).await;
        assert_eq!(r.status, status, "{method}: {}", r.text());
        assert_eq!(
            up.heads.load(Ordering::SeqCst),
            heads,
            "{method}: heads the upstream saw"
        );
        t.stop().await;
    }
}

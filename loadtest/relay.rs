//! The L4 relay floor, to run beside tollgate: a blind TCP relay (tokio's
//! `copy_bidirectional`, one current-thread runtime, no HTTP parsing), which makes the same
//! reads and writes a user-space proxy must make. What tollgate costs above it is what parsing,
//! limiting and forwarding HTTP cost.
//!
//!     cargo build --release --example relay
//!     ROUNDS=5 loadtest/cpu-ab.sh target/release/examples/relay target/release/tollgate
//!
//! It takes tollgate's `--listen`, `--upstream http://HOST:PORT` and `--admin-listen` (where
//! it answers any request `200`, so the loadtest scripts' `/ready` wait works) and ignores
//! every other argument, so the scripts start it as they start tollgate.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let (listen, upstream, admin) = args()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let relay = TcpListener::bind(listen).await?;
            if let Some(admin) = admin {
                tokio::spawn(ready(TcpListener::bind(admin).await?));
            }
            loop {
                let (client, _) = relay.accept().await?;
                tokio::spawn(pipe(client, upstream));
            }
        })
}

/// One client connection, relayed to its own upstream connection until either side closes.
async fn pipe(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = (client.set_nodelay(true), up.set_nodelay(true));
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}

/// `200` with an empty body to any request, then close: the scripts' readiness probe.
async fn ready(admin: TcpListener) {
    while let Ok((mut conn, _)) = admin.accept().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            let _ = conn.write_all(answer).await;
        });
    }
}

/// `--listen ADDR`, `--upstream http://ADDR` and `--admin-listen ADDR`; any other argument
/// (tollgate's other flags and their values) is skipped.
fn args() -> std::io::Result<(SocketAddr, SocketAddr, Option<SocketAddr>)> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    let addr = |v: Option<String>, flag: &str| {
        let v = v.ok_or_else(|| bad(format!("{flag} needs a value")))?;
        let v = v
            .strip_prefix("http://")
            .unwrap_or(&v)
            .trim_end_matches('/');
        v.parse::<SocketAddr>()
            .map_err(|e| bad(format!("{flag} {v}: {e}")))
    };
    let (mut listen, mut upstream, mut admin) = (None, None, None);
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        match flag.as_str() {
            "--listen" => listen = Some(addr(argv.next(), "--listen")?),
            "--upstream" => upstream = Some(addr(argv.next(), "--upstream")?),
            "--admin-listen" => admin = Some(addr(argv.next(), "--admin-listen")?),
            _ => {}
        }
    }
    match (listen, upstream) {
        (Some(l), Some(u)) => Ok((l, u, admin)),
        _ => Err(bad(
            "usage: relay --listen ADDR --upstream http://ADDR [--admin-listen ADDR]".into(),
        )),
    }
}

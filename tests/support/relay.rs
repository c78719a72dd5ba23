//! A TCP relay on 127.0.0.1:0 that a test controls: put it between tollgate and Postgres, then
//! cut it (every connection drops, new ones are refused) and restore it, or arm it to drop a
//! connection right after the client sends a pattern (e.g. `COMMIT`), replies unsent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Default)]
struct State {
    cut: AtomicBool,
    armed: Mutex<Option<Vec<u8>>>,
    tripped: AtomicBool,
    conns: Mutex<Vec<AbortHandle>>,
}

/// The relay; dropping it stops accepting.
pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if st.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let conn = tokio::spawn(pipe(client, target, st.clone()));
                st.conns.lock().unwrap().push(conn.abort_handle());
            }
        })
        .abort_handle();
        Relay {
            addr,
            state,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones until [`Relay::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for c in self.state.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Once: the first client chunk containing `pattern` is forwarded, the server's reply is
    /// swallowed (the client sees its connection close) and the server side is dropped 300 ms later.
    pub fn cut_after(&self, pattern: &[u8]) {
        *self.state.armed.lock().unwrap() = Some(pattern.to_vec());
    }

    /// Whether an armed cut has fired.
    pub fn tripped(&self) -> bool {
        self.state.tripped.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pipe(client: TcpStream, target: SocketAddr, st: Arc<State>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let silenced = Arc::new(AtomicBool::new(false));
    let quiet = silenced.clone();
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = sr.read(&mut buf).await {
            if quiet.load(Ordering::SeqCst) || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = cr.read(&mut buf).await {
        let hit = {
            let mut armed = st.armed.lock().unwrap();
            let hit = armed
                .as_ref()
                .is_some_and(|p| buf[..n].windows(p.len()).any(|w| w == &p[..]));
            if hit {
                *armed = None;
            }
            hit
        };
        if hit {
            silenced.store(true, Ordering::SeqCst);
            st.tripped.store(true, Ordering::SeqCst);
        }
        if sw.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if hit {
            tokio::time::sleep(Duration::from_millis(300)).await;
            break;
        }
    }
    down.abort();
}

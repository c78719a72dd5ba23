//! How the proxy's accept loops are laid out over threads (`server.workers`, `server.runtime`).
//!
//! **`per_worker`** (the default): worker 0 runs on the main thread's current-thread runtime,
//! beside the admin plane. Workers 1..N each run their own current-thread runtime on a thread
//! named `tg-worker-N`. Each worker has its own listening socket, and all of them are bound to
//! one address with SO_REUSEPORT. The kernel spreads new connections over the sockets, and a
//! connection lives on the thread that accepted it. So no task migrates, no wakeup crosses
//! threads, and each thread keeps its own upstream pool (`pool.rs` is per thread). What limits
//! is still shared: the limiter's table, `max_connections` and the metrics are process-wide.
//!
//! **`work_stealing`**, and any single worker: one socket and one accept loop, on the main
//! runtime (a multi-thread one under `work_stealing` with more than one worker).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use super::listener::{self, Shared};
use crate::config::{RuntimeShape, Settings};
use crate::shutdown::Shutdown;
use crate::telemetry::{Metrics, WORKER_CONNECTIONS};

/// The kernel's queue of connections not yet accepted, per socket (tokio's default too).
const BACKLOG: i32 = 1024;

/// The proxy's bound sockets: worker 0's, served on the caller's runtime, and the other
/// workers', each to be served on its own thread.
pub struct Listeners {
    pub first: TcpListener,
    rest: Vec<std::net::TcpListener>,
}

impl Listeners {
    /// Bind `settings.listen` once per worker that needs a socket of its own.
    pub fn bind(settings: &Settings) -> io::Result<Listeners> {
        let own_sockets = match settings.runtime {
            RuntimeShape::PerWorker => settings.proxy_workers(),
            RuntimeShape::WorkStealing => 1,
        };
        let mut sockets = if own_sockets == 1 {
            vec![listening(socket(settings.listen)?, settings.listen)?]
        } else {
            reuseport_group(settings.listen, own_sockets)?
        };
        let first = TcpListener::from_std(sockets.remove(0))?;
        Ok(Listeners {
            first,
            rest: sockets,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.first.local_addr()
    }

    /// Worker 0 on the caller's runtime, each other worker on a thread of its own. Every worker
    /// stops accepting when `shutdown` fires, then keeps its connections until the shared
    /// tracker drains (or `drain_timeout` passes). On an error no worker is left serving: the
    /// runtimes are all built before any thread starts, and a thread that cannot start fires
    /// `shutdown` for those already started.
    pub fn serve(
        self,
        shared: &Shared,
        shutdown: &Shutdown,
        settings: &Settings,
        metrics: &Metrics,
    ) -> io::Result<()> {
        let accepted =
            |n: usize| metrics.counter(WORKER_CONNECTIONS, &[("worker", &n.to_string())]);
        let runtimes = self
            .rest
            .iter()
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<io::Result<Vec<_>>>()?;
        for (i, (socket, runtime)) in self.rest.into_iter().zip(runtimes).enumerate() {
            let n = i + 1;
            let (shared, accepted, stop) = (shared.clone(), accepted(n), shutdown.subscribe());
            let drain = settings.drain_timeout;
            let started = std::thread::Builder::new()
                .name(format!("tg-worker-{n}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let listener = match TcpListener::from_std(socket) {
                            Ok(l) => l,
                            Err(e) => {
                                tracing::error!(worker = n, error = %e, "cannot register the worker's socket; it accepts nothing");
                                return;
                            }
                        };
                        let tracker = shared.tracker.clone();
                        listener::serve(listener, shared, accepted, stop).await;
                        // The connections are this runtime's tasks: dropping it would cut them.
                        tracker.drain(drain).await;
                    })
                });
            if let Err(e) = started {
                shutdown.trigger();
                return Err(e);
            }
        }
        tokio::spawn(listener::serve(
            self.first,
            shared.clone(),
            accepted(0),
            shutdown.subscribe(),
        ));
        Ok(())
    }
}

fn socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

fn listening(socket: Socket, addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// `count` listening sockets on one address, in one SO_REUSEPORT group.
///
/// A plain bind comes first and must succeed: it fails when anything else listens there,
/// including another process's SO_REUSEPORT group (a second tollgate started by mistake), which
/// the group's own binds would join without a word and then share its connections. It also
/// turns port 0 into the one port every socket of the group binds. The probe stays bound (not
/// listening, which the group's binds allow) until the group is bound, so the port cannot be
/// handed to anyone else in between, as port 0's could to another `bind` or a `connect`. Two
/// instances started at the same instant can still both pass their probes.
fn reuseport_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let probe = socket(addr)?;
    probe.bind(&addr.into())?;
    let addr = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("the bound address is not an IP socket address"))?;
    let group = (0..count)
        .map(|_| {
            let s = socket(addr)?;
            s.set_reuse_port(true)?;
            listening(s, addr)
        })
        .collect();
    drop(probe);
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_refuses_a_port_in_use() {
        // A fixed port too: the probe, still bound, must not stop the group's binds.
        // (A port just freed may be taken by a parallel test before the group binds it: retry.)
        let (fixed, fixed_group) = (0..5)
            .find_map(|_| {
                let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let fixed = free.local_addr().unwrap();
                drop(free);
                reuseport_group(fixed, 2).ok().map(|g| (fixed, g))
            })
            .expect("a group on a fixed free port");
        assert!(fixed_group.iter().all(|l| l.local_addr().unwrap() == fixed));
        drop(fixed_group);
        let group = reuseport_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = group
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
        let taken = group[0].local_addr().unwrap();
        let err = reuseport_group(taken, 2).expect_err("the port is held by a group");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}

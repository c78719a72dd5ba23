//! Background work on threads below the proxy's priority.
//!
//! The proxy's runtime thread serves every request; anything else that runs on it for
//! milliseconds at a time (walking a million-key table, encoding a 20k-row batch) holds every
//! request queued behind it. Such work runs here instead: [`spawn_below`] drives a future on a
//! named thread of its own, [`NICE_BELOW`] steps nicer than the proxy, so a request's wake-up
//! comes first wherever the two share a CPU (one core, a container's CPU limit).
//!
//! Users: the store's flusher (`tg-store`, with SQLite's connection threads lowered the same
//! way in `store/priority.rs`) and the idle-key sweeper (`tg-sweep`). Linux reads the nice per
//! thread; where the call is refused the thread keeps the process's priority and works the same.

use std::future::Future;
use std::sync::{Arc, Mutex};

use rustix::process::{getpid, getpriority_process, setpriority_process, Pid};

/// How many nice steps below the proxy background threads run (capped at 19).
pub const NICE_BELOW: i32 = 10;

/// The nice background threads get: the main thread's plus [`NICE_BELOW`]. The main thread is
/// the proxy's (it runs the runtime, or started its workers, which inherit its nice), and the
/// process id names it. Computed from it rather than from the caller, which may be a background
/// thread already lowered.
pub fn target_nice() -> Option<i32> {
    let own = getpriority_process(Some(getpid())).ok()?;
    Some((own + NICE_BELOW).min(19))
}

/// Sets thread `tid` (`None`: the calling thread) to [`target_nice`]; `what` names it in the
/// warning if that is refused.
pub fn lower(tid: Option<Pid>, what: &str) {
    let Some(target) = target_nice() else {
        return;
    };
    if let Err(e) = setpriority_process(tid, target) {
        tracing::warn!(error = %e, thread = what, "cannot lower a background thread's priority");
    }
}

/// Runs `task` on a thread named `name` (at most 15 bytes, the kernel's limit) at
/// [`target_nice`], on a current-thread runtime of that thread's own: the task's timers, and
/// the I/O it opens, are driven there, so the task is never left polling a runtime that was
/// shut down under it. The task ends when it is done, or is dropped when the caller's runtime
/// shuts down first (as a task spawned on it would be). The handle finishes when the task
/// ends, or panics (the thread ends, the process goes on). Must be called within a runtime;
/// where the thread or its runtime cannot be started, the task runs on the caller's runtime.
pub fn spawn_below<F>(name: &'static str, task: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return beside_the_proxy(name, &e, task),
    };
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    // Held by the handle's task on the caller's runtime: dropped with it at its shutdown.
    let (alive, caller_gone) = tokio::sync::oneshot::channel::<()>();
    // Where the thread cannot start, `spawn` drops its closure: the task is taken back from here.
    let slot = Arc::new(Mutex::new(Some(task)));
    let taken = slot.clone();
    let started = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower(None, name);
            let task = taken.lock().ok().and_then(|mut t| t.take());
            if let Some(task) = task {
                runtime.block_on(async {
                    tokio::select! {
                        () = task => {}
                        _ = caller_gone => {}
                    }
                });
            }
            drop(done);
        });
    match started {
        Ok(_) => tokio::spawn(async move {
            let _alive = alive;
            // An error only says the thread ended without sending: it always does.
            let _ = finished.await;
        }),
        Err(e) => match slot.lock().ok().and_then(|mut t| t.take()) {
            Some(task) => beside_the_proxy(name, &e, task),
            None => tokio::spawn(async {}),
        },
    }
}

/// The fallback of [`spawn_below`]: `task` on the caller's runtime, with a warning.
fn beside_the_proxy<F>(name: &str, error: &std::io::Error, task: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tracing::warn!(%error, thread = name, "cannot start a background thread; its work runs beside the proxy");
    tokio::spawn(task)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    /// Sends the name of the thread it is dropped on.
    struct Guard(mpsc::Sender<Option<String>>);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().map(str::to_owned));
        }
    }

    #[test]
    fn a_task_runs_on_its_named_thread_and_is_dropped_when_the_callers_runtime_shuts_down() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let (ran_tx, ran) = mpsc::channel();
        runtime.block_on(async {
            super::spawn_below("tg-test", async move {
                let _guard = Guard(tx);
                let _ = ran_tx.send(std::thread::current().name().map(str::to_owned));
                // Timers of its own runtime: forever, unless dropped.
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        });
        let wait = Duration::from_secs(10);
        assert_eq!(ran.recv_timeout(wait).unwrap().as_deref(), Some("tg-test"));
        assert!(
            rx.try_recv().is_err(),
            "dropped while the caller's runtime runs"
        );
        drop(runtime);
        assert_eq!(rx.recv_timeout(wait).unwrap().as_deref(), Some("tg-test"));
    }

    #[tokio::test]
    async fn the_handle_finishes_when_the_task_does() {
        let handle = super::spawn_below("tg-test", async {
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the handle finished")
            .unwrap();
    }
}

//! The SQLite store's threads run at a lower priority than the proxy.
//!
//! sqlx runs each SQLite connection on a thread of its own. A flush that upserts tens of
//! thousands of rows keeps that thread busy for tens of milliseconds; where it shares a CPU with
//! the proxy's worker (one core, a container's CPU limit), requests queued behind it waited out
//! the scheduler's slices. Each connection's thread is named [`THREAD_PREFIX`] and, once
//! connected, set `NICE_BELOW` steps nicer than the process, so a request's wake-up comes first.
//! Linux only (it reads `/proc/self/task`); elsewhere, or where the call is refused, the
//! threads keep the process's priority and the store works the same.

use rustix::process::{getpriority_process, setpriority_process, Pid};

/// The name of each connection's thread, then sqlx's connection number (`tg-sqlite-3`); at
/// most 15 bytes in all, the kernel's limit for a thread name.
pub(super) const THREAD_PREFIX: &str = "tg-sqlite-";

/// How many nice steps below the process the store's threads run (capped at 19).
const NICE_BELOW: i32 = 10;

/// Lower every store thread of this process to the caller's priority plus [`NICE_BELOW`].
/// Called after each new connection, when its thread exists and has named itself.
pub(super) fn lower_store_threads() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    // The calling thread's nice (Linux reads `PRIO_PROCESS` 0 per thread): a runtime thread's,
    // which is the proxy's.
    let Ok(own) = getpriority_process(None) else {
        return;
    };
    let target = (own + NICE_BELOW).min(19);
    for task in tasks.flatten() {
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if !name.starts_with(THREAD_PREFIX) {
            continue;
        }
        let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
        let Some(tid) = tid.and_then(Pid::from_raw) else {
            continue;
        };
        if let Err(e) = setpriority_process(Some(tid), target) {
            // Once per connection at most (four): the store works on, at the proxy's priority.
            tracing::warn!(error = %e, "cannot lower the SQLite store thread's priority");
        }
    }
}

//! The SQLite store's connection threads run below the proxy's priority.
//!
//! sqlx runs each SQLite connection on a thread of its own. A flush that upserts tens of
//! thousands of rows keeps that thread busy for tens of milliseconds; where it shares a CPU with
//! the proxy's worker, requests queued behind it waited out the scheduler's slices. Each
//! connection's thread is named [`SQLITE_THREAD_PREFIX`] and, once connected, lowered like every
//! background thread (see [`crate::background`]; the flusher itself runs on one, `tg-store`).
//! Linux only (it reads `/proc/self/task`); elsewhere the threads keep the process's priority.

use rustix::process::Pid;

/// The name of each SQLite connection's thread, then sqlx's connection number (`tg-sqlite-3`);
/// at most 15 bytes in all, the kernel's limit for a thread name.
pub(super) const SQLITE_THREAD_PREFIX: &str = "tg-sqlite-";

/// The flusher's thread.
pub(super) const STORE_THREAD: &str = "tg-store";

/// Lower every SQLite connection thread of this process. Called after each new connection,
/// when its thread exists and has named itself.
pub(super) fn lower_sqlite_threads() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if !name.starts_with(SQLITE_THREAD_PREFIX) {
            continue;
        }
        let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
        if let Some(tid) = tid.and_then(Pid::from_raw) {
            // Once per connection at most (four) if refused: the store works on regardless.
            crate::background::lower(Some(tid), SQLITE_THREAD_PREFIX);
        }
    }
}

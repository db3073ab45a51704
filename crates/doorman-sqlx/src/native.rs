//! SQLite on a file, driven directly: reads on the calling thread, writes
//! on one thread of the store's own, committed in groups.
//!
//! sqlx runs every SQLite connection on a worker thread of its own, so
//! each statement is two thread hand-offs; on a busy two-core box that
//! costs tens of microseconds, far more than the statement. Here:
//!
//! - **Reads** run on the caller's thread, on one of a few connections
//!   (`readers`), each behind a mutex held only for the statement — a
//!   primary-key lookup from SQLite's page cache takes microseconds. Each
//!   thread keeps to a reader of its own while it is free. In WAL mode
//!   readers never wait for the writer.
//! - **Writes** are closures sent to the writer thread, which owns the one
//!   writing connection. It takes every write waiting in its queue (up to
//!   [`MAX_BATCH`]), runs them in one `BEGIN IMMEDIATE` transaction and
//!   commits once (group commit). If one of them fails, the transaction
//!   is rolled back and the group run again, each write in a savepoint
//!   of its own, so a failure undoes only itself. No answer leaves the
//!   thread before the transaction holding it has committed.
//!   A caller that stops waiting (its future dropped) changes nothing: its
//!   write runs to the end or not at all, never halfway.
//! - **Checkpoints** run on a thread of their own, after commits.
//! - **The keeper** (shared files only): one more connection holds a read
//!   transaction open on the latest snapshot and reads nothing, so that
//!   the readers' transactions skip the `-shm` file lock; see [`Keeper`].

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use doorman::StoreError;
use doorman::store::thread_index;
use rusqlite::{Connection, OpenFlags, ToSql};

/// SQLite's VFS for a file one process owns
/// ([`SqlStoreOptions::sqlite_exclusive`](crate::SqlStoreOptions::sqlite_exclusive)):
/// a process-wide lock on the file, the WAL index in memory, no file lock
/// per transaction.
pub(crate) const EXCLUSIVE_VFS: &str = "unix-excl";

/// The most writes one transaction of the writer thread takes.
pub(crate) const MAX_BATCH: usize = 128;

/// The store's direct SQLite connections: readers and the writer thread.
pub(crate) struct Native {
    readers: Box<[Mutex<Option<Connection>>]>,
    /// The keeper (a shared file only).
    keep: Option<Arc<Keep>>,
    /// To the writer thread.
    writes: Mutex<Option<mpsc::Sender<Msg>>>,
}

enum Msg {
    Write(Box<dyn Write>),
    /// Finish what came before, close the connection, then answer.
    Stop(tokio::sync::oneshot::Sender<()>),
}

impl Native {
    /// Opens `readers` reading connections and the writer thread on the
    /// SQLite file at `path`, which exists and is in WAL mode already;
    /// `exclusive`: with [`EXCLUSIVE_VFS`], as the store's pool.
    pub(crate) fn open(
        path: &Path,
        readers: usize,
        busy: Duration,
        exclusive: bool,
    ) -> Result<Self, StoreError> {
        let open = || -> Result<Connection, StoreError> {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = if exclusive {
                Connection::open_with_flags_and_vfs(path, flags, EXCLUSIVE_VFS)
            } else {
                Connection::open_with_flags(path, flags)
            }
            .map_err(sqlite)?;
            conn.busy_timeout(busy).map_err(sqlite)?;
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON")
                .map_err(sqlite)?;
            conn.set_prepared_statement_cache_capacity(64);
            Ok(conn)
        };
        let readers = (0..readers.max(1))
            .map(|_| {
                let conn = open()?;
                pragmas(&conn, READER_CACHE_KIB)?;
                // Writes belong to the writer thread: one here would race it
                // for the lock (and a host's `sqlite_read` must not write).
                conn.execute_batch("PRAGMA query_only = ON")
                    .map_err(sqlite)?;
                Ok(Mutex::new(Some(conn)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?
            .into_boxed_slice();
        let writer = open()?;
        pragmas(&writer, WRITER_CACHE_KIB)?;
        // Checkpoints run beside the writer, not in its commits, except
        // for the catch-up that lets the WAL start over (`catch_up`).
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0")
            .map_err(sqlite)?;
        writer.wal_hook(Some(note_wal_frames));
        let checkpointer = open()?;
        // The unix-excl VFS takes no lock per transaction: nothing to keep.
        let keep = if exclusive {
            None
        } else {
            let conn = open()?;
            pragmas(&conn, KEEPER_CACHE_KIB)?;
            conn.execute_batch("PRAGMA query_only = ON")
                .map_err(sqlite)?;
            Some(Arc::new(Keep::new(Keeper::new(conn))))
        };
        let (kick, kicks) = mpsc::sync_channel(1);
        let for_checkpoints = keep.clone();
        spawn("doorman-sqlite-checkpoint", move || {
            checkpoint_loop(&checkpointer, &kicks, for_checkpoints.as_deref())
        })?;
        let (tx, rx) = mpsc::channel();
        let for_writer = keep.clone();
        spawn("doorman-sqlite-writer", move || {
            write_loop(writer, &rx, &kick, for_writer.as_deref())
        })?;
        Ok(Self {
            readers,
            keep,
            writes: Mutex::new(Some(tx)),
        })
    }

    /// Runs `f` on a reading connection, on this thread.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let n = self.readers.len();
        // This thread's home reader first: each thread keeps to a
        // connection of its own, whose pages stay warm in that thread's
        // CPU cache, and no counter is written by every thread on every
        // read. Another free reader is taken when that one is busy.
        let start = thread_index() % n;
        let free = (0..n).find_map(|i| try_lock(&self.readers[(start + i) % n]));
        let guard = match free {
            Some(guard) => guard,
            None => self.readers[start]
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        };
        let read = f(guard.as_ref().ok_or_else(closed)?);
        drop(guard);
        if let Some(keep) = &self.keep {
            keep.move_if_due();
        }
        read
    }

    /// Runs `f` on the writer thread inside a write transaction, and
    /// answers once that transaction has committed (an `Err` from `f`
    /// undoes what `f` wrote and is answered as is).
    ///
    /// `f` may run twice: when another write of its group fails, the
    /// group is undone and run again write by write. What its last run
    /// answered is what is committed and answered.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Box::new(Job {
            f,
            result: None,
            tx,
        });
        let sent = match &*self.writes.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(writes) => writes.send(Msg::Write(job)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(closed());
        }
        rx.await
            .map_err(|_| StoreError::message("doorman-sqlx: the SQLite writer stopped"))?
    }

    /// Lets the writes queued so far finish, then closes every connection;
    /// later calls fail.
    pub(crate) async fn close(&self) {
        let writes = self
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writes) = writes {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if writes.send(Msg::Stop(tx)).is_ok() {
                let _ = rx.await;
            }
        }
        for reader in &*self.readers {
            reader.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }
}

/// A write waiting for the writer thread, type-erased.
trait Write: Send {
    /// Runs it inside the open transaction; whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: its own result, unless `undone` says the
    /// transaction holding its work did not commit.
    fn answer(self: Box<Self>, undone: Option<&str>);
    /// Answers the caller without having run.
    fn refuse(self: Box<Self>, why: &str);
}

struct Job<F, T> {
    f: F,
    result: Option<Result<T, StoreError>>,
    tx: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Write for Job<F, T>
where
    T: Send,
    F: Fn(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let f = &self.f;
        let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(StoreError::message("doorman-sqlx: a write panicked")));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, undone: Option<&str>) {
        let why = undone.unwrap_or("the transaction ended first");
        let result = match (self.result, undone) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), None) => Ok(value),
            (Some(Ok(_)), Some(_)) => Err(StoreError::message(format!(
                "doorman-sqlx: the SQLite write did not commit: {why}"
            ))),
            (None, _) => Err(StoreError::message(format!(
                "doorman-sqlx: the SQLite write did not run: {why}"
            ))),
        };
        let _ = self.tx.send(result);
    }

    fn refuse(self: Box<Self>, why: &str) {
        let _ = self.tx.send(Err(StoreError::message(format!(
            "doorman-sqlx: the SQLite write did not run: {why}"
        ))));
    }
}

/// Page cache of each reading connection (KiB).
const READER_CACHE_KIB: i64 = 8 * 1024;
/// Page cache of the writer (KiB): the B-tree pages its inserts land on.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// The least time between two checkpoints while writes keep coming: a
/// page written again and again in that time is copied (and synced) once.
/// 200 ms gave client_credentials a few percent over 20 ms and five
/// `fsync`s a second instead of fifty.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Cache size of a connection, and no memory map. A connection whose read
/// transaction finds the WAL changed since its last one (any commit in
/// between) unmaps its whole mapping of the file: with writes going on,
/// every read paid a `munmap`, the TLB shootdown it sends to the other
/// cores and the page faults that map the file again (over a tenth of the demo
/// while codes were minted). Without a mapping, such a read rereads its
/// few pages with `pread` from the OS cache: the code mint went 9.7k →
/// 21.7k req/s and the full flow 4.4k → 7.2k flows/s; read-only loads
/// (the bearer check) did not change.
fn pragmas(conn: &Connection, cache_kib: i64) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{cache_kib}; PRAGMA mmap_size = 0"
    ))
    .map_err(sqlite)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(StoreError::backend)
}

/// WAL frames after which the writer catches up with the checkpoint
/// itself (32768 pages: 128 MiB). The catch-up stops every write for its
/// two `fsync`s (about 20 ms on the benchmark box): at 8192 frames that
/// was a fifth of the writer's time under load, here it is a few percent.
/// The WAL file keeps its largest size until the store closes, when
/// SQLite checkpoints and removes it.
const RESTART_FRAMES: c_int = 32768;

thread_local! {
    /// The writer thread's WAL size after its last commit, in frames
    /// (set by [`note_wal_frames`]).
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// The writer's WAL hook, after each commit: notes the WAL's size for
/// [`catch_up`].
fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// After a commit of the writer: once the WAL holds [`RESTART_FRAMES`], a
/// `PASSIVE` checkpoint on the writer's own thread. The checkpoint thread
/// has copied most frames already, but only the writer can copy the last
/// ones while no new ones arrive — and a WAL copied to its end is written
/// from its start again by the next transaction, instead of growing. The
/// keeper steps aside for it, or it could copy only what the keeper's
/// snapshot holds. Busy (the checkpoint thread is at it, a reader holds
/// an old snapshot): tried again after the next commit.
fn catch_up(conn: &Connection, keep: Option<&Keep>) {
    if WAL_FRAMES.replace(0) < RESTART_FRAMES {
        return;
    }
    checkpoint(conn, keep, false);
}

/// A `PASSIVE` checkpoint on `conn`, the keeper stepping aside for it;
/// without `wait`, none while another thread has the keeper. A failed
/// checkpoint is tried again after the next commit; the WAL keeps every
/// frame until one succeeds.
fn checkpoint(conn: &Connection, keep: Option<&Keep>, wait: bool) {
    let run = || {
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    };
    match keep {
        Some(keep) => keep.aside(wait, run),
        None => run(),
    }
}

/// `m` locked now (poisoned or not), or `None` while another thread holds
/// it.
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The checkpoint thread: after commits (the writer kicks it), copies the
/// committed WAL frames into the database file — `PASSIVE`, so it never
/// waits for or blocks the writer or a reader — at most every
/// [`CHECKPOINT_EVERY`], the keeper stepping aside meanwhile. Without
/// commits, every [`KEEPER_IDLE`] it checkpoints all the same (the WAL
/// may hold other processes' commits) and so moves the keeper to the
/// latest snapshot: another process's checkpoints never wait longer for
/// the keeper, and one that must find the WAL copied to its end with no
/// reader in it (`TRUNCATE`) finds that. Stops with the writer.
fn checkpoint_loop(conn: &Connection, kicks: &mpsc::Receiver<()>, keep: Option<&Keep>) {
    loop {
        match kicks.recv_timeout(KEEPER_IDLE) {
            Ok(()) => {
                checkpoint(conn, keep, true);
                std::thread::sleep(CHECKPOINT_EVERY);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => checkpoint(conn, keep, true),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// How long the keeper may go without moving while nothing reads and this
/// store commits nothing: bounds how long it holds back another process's
/// checkpoints.
const KEEPER_IDLE: Duration = Duration::from_secs(1);
/// How old the keeper's snapshot may grow while reads go on: after a
/// commit (of this process or another), reads take the file lock
/// themselves until the keeper has moved. Moving costs a few microseconds
/// of the read that does it; every 2 ms that is a fraction of a percent of
/// a core.
const KEEPER_EVERY: Duration = Duration::from_millis(2);
/// Page cache of the keeper (KiB): it reads one page.
const KEEPER_CACHE_KIB: i64 = 64;

/// A connection that holds a read transaction open and reads nothing, so
/// that the readers' transactions skip SQLite's file lock.
///
/// In SQLite's shared mode (the unix VFS) each read transaction takes a
/// shared lock on one of the `-shm` file's read slots and drops it at its
/// end: an `fcntl` system call each, under a mutex all the process's
/// connections share — 9–15 % of the demo's CPU in bearer-check profiles
/// (BENCHMARKS.md, S8). SQLite skips the `fcntl` while another connection
/// of the same process holds the same slot (it counts the process's
/// holders), and every read transaction takes the slot that marks the
/// latest snapshot. The keeper holds that slot, so the readers' locks and
/// unlocks only count (BENCHMARKS.md, S13).
///
/// It never answers a read: its snapshot growing old serves nothing old.
/// Each reader still reads the latest commit, of this process or another.
///
/// What an old snapshot does hold back is checkpointing: no checkpoint may
/// copy frames past it, and none may copy at all while it reads the
/// database file itself (a snapshot with the WAL fully copied). And after
/// a commit it no longer holds the slot new reads take. So ([`Keep`]) the
/// keeper moves to the latest snapshot after a read once its snapshot is
/// [`KEEPER_EVERY`] old, steps aside while this store checkpoints, and
/// moves every [`KEEPER_IDLE`] while nothing reads: another process's
/// checkpoints wait for it at most that long.
struct Keeper {
    conn: Connection,
}

impl Keeper {
    /// On its latest snapshot.
    fn new(conn: Connection) -> Self {
        let mut keeper = Self { conn };
        keeper.refresh();
        keeper
    }

    /// Whether it holds a read transaction: [`Keeper::refresh`] leaves
    /// its connection in a transaction only once the transaction has read.
    fn is_open(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Ends its transaction, if open.
    fn release(&mut self) {
        if self.is_open() && run_sql(&self.conn, "COMMIT").is_err() && self.is_open() {
            let _ = run_sql(&self.conn, "ROLLBACK");
        }
    }

    /// Ends its read transaction and opens one on the latest snapshot.
    fn refresh(&mut self) {
        self.release();
        if run_sql(&self.conn, "BEGIN").is_err() {
            return;
        }
        // A read opens the transaction's snapshot; a failure leaves none.
        let read = self
            .conn
            .prepare_cached("SELECT 1 FROM sqlite_schema LIMIT 1")
            .and_then(|mut s| s.query([]).and_then(|mut rows| rows.next().map(drop)));
        if read.is_err() {
            let _ = run_sql(&self.conn, "ROLLBACK");
        }
    }
}

/// The [`Keeper`], shared by the readers, the writer and the checkpoint
/// thread, and when it last moved.
struct Keep {
    keeper: Mutex<Option<Keeper>>,
    /// When the keeper last moved, in microseconds since `epoch`: every
    /// read looks, without taking the lock.
    moved: AtomicU64,
    epoch: Instant,
}

impl Keep {
    fn new(keeper: Keeper) -> Self {
        Self {
            keeper: Mutex::new(Some(keeper)),
            moved: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn due(&self) -> bool {
        let age = self
            .now()
            .saturating_sub(self.moved.load(Ordering::Relaxed));
        u128::from(age) >= KEEPER_EVERY.as_micros()
    }

    /// After a read: moves the keeper to the latest snapshot once it is
    /// [`KEEPER_EVERY`] old, unless another thread has it.
    fn move_if_due(&self) {
        if !self.due() {
            return;
        }
        let Some(mut keeper) = try_lock(&self.keeper) else {
            return;
        };
        // Another read may have moved it while this one looked.
        if self.due() {
            if let Some(k) = keeper.as_mut() {
                k.refresh();
            }
            self.moved.store(self.now(), Ordering::Relaxed);
        }
    }

    /// Runs `f` with the keeper out of the way, then moves the keeper to
    /// the latest snapshot. Without `wait`, does nothing (`f` not run)
    /// while another thread has the keeper.
    fn aside(&self, wait: bool, f: impl FnOnce()) {
        let mut keeper = if wait {
            self.keeper.lock().unwrap_or_else(PoisonError::into_inner)
        } else {
            let Some(keeper) = try_lock(&self.keeper) else {
                return;
            };
            keeper
        };
        if let Some(k) = keeper.as_mut() {
            k.release();
        }
        f();
        if let Some(k) = keeper.as_mut() {
            k.refresh();
        }
        self.moved.store(self.now(), Ordering::Relaxed);
    }

    /// Closes the keeper's connection for good.
    fn close(&self) {
        self.keeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// The writer thread: one transaction per batch of queued writes, until
/// told to stop or every sender is gone. After each, catches up with the
/// checkpoint if due and kicks the checkpoint thread.
fn write_loop(
    conn: Connection,
    rx: &mpsc::Receiver<Msg>,
    kick: &mpsc::SyncSender<()>,
    keep: Option<&Keep>,
) {
    let mut batch: Vec<Box<dyn Write>> = Vec::with_capacity(MAX_BATCH);
    let mut stop = None;
    while stop.is_none() {
        let Ok(first) = rx.recv() else { break };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Write(w) => batch.push(w),
                Msg::Stop(ack) => {
                    stop = Some(ack);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit(&conn, &mut batch);
            catch_up(&conn, keep);
            // Full: a kick is pending already.
            let _ = kick.try_send(());
        }
    }
    // The keeper goes first: the last connection to close checkpoints the
    // WAL and removes it.
    if let Some(keep) = keep {
        keep.close();
    }
    drop(conn);
    if let Some(ack) = stop {
        let _ = ack.send(());
    }
}

/// Runs `batch` in one transaction and answers every write of it.
///
/// All of them run in one go first. Only if one fails is the transaction
/// rolled back and the batch run again, each write in a savepoint of its
/// own, so that the failure undoes only itself: savepoints copy every page
/// a write touches, a price not worth paying while writes succeed.
fn commit(conn: &Connection, batch: &mut Vec<Box<dyn Write>>) {
    if let Err(e) = run_sql(conn, "BEGIN IMMEDIATE") {
        let why = e.to_string();
        batch.drain(..).for_each(|w| w.refuse(&why));
        return;
    }
    let all_ok = batch
        .iter_mut()
        .all(|w| w.run(conn) && !conn.is_autocommit());
    if all_ok {
        let undone = run_sql(conn, "COMMIT").err().map(|e| e.to_string());
        if undone.is_some() && !conn.is_autocommit() {
            let _ = run_sql(conn, "ROLLBACK");
        }
        batch.drain(..).for_each(|w| w.answer(undone.as_deref()));
        return;
    }
    if !conn.is_autocommit() {
        let _ = run_sql(conn, "ROLLBACK");
    }
    if batch.len() == 1 {
        // Its own failure, and nothing of it written.
        batch.drain(..).for_each(|w| w.answer(None));
        return;
    }
    commit_one_by_one(conn, batch);
}

/// [`commit`]'s second try: each write of `batch` in a savepoint.
fn commit_one_by_one(conn: &Connection, batch: &mut Vec<Box<dyn Write>>) {
    if let Err(e) = run_sql(conn, "BEGIN IMMEDIATE") {
        let why = e.to_string();
        batch.drain(..).for_each(|w| w.refuse(&why));
        return;
    }
    let mut broken = None;
    for w in batch.iter_mut() {
        if let Err(e) = run_sql(conn, "SAVEPOINT w") {
            broken = Some(e.to_string());
            break;
        }
        let ok = w.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (I/O error, disk
            // full): the writes before this one are undone too.
            broken = Some("SQLite rolled the transaction back".to_owned());
            break;
        }
        let end = if ok {
            run_sql(conn, "RELEASE w")
        } else {
            run_sql(conn, "ROLLBACK TO w").and_then(|()| run_sql(conn, "RELEASE w"))
        };
        if let Err(e) = end {
            broken = Some(e.to_string());
            break;
        }
    }
    if broken.is_none()
        && !conn.is_autocommit()
        && let Err(e) = run_sql(conn, "COMMIT")
    {
        broken = Some(e.to_string());
    }
    if broken.is_some() && !conn.is_autocommit() {
        let _ = run_sql(conn, "ROLLBACK");
    }
    batch.drain(..).for_each(|w| w.answer(broken.as_deref()));
}

fn run_sql(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The error of a call after [`Native::close`].
fn closed() -> StoreError {
    StoreError::message("doorman-sqlx: the store is closed")
}

/// Wraps a SQLite error.
pub(crate) fn sqlite(e: rusqlite::Error) -> StoreError {
    StoreError::backend(e)
}

/// `$1`, `$2`, …: the names the shared SQL text gives its parameters.
const NAMES: [&str; 16] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15",
    "$16",
];

/// Binds `values` to the parameters `$1`, `$2`, … of the shared SQL text
/// (SQLite numbers named parameters in order of appearance, so they are
/// bound by name).
pub(crate) fn named<const N: usize>(values: [&dyn ToSql; N]) -> [(&'static str, &dyn ToSql); N] {
    std::array::from_fn(|i| (NAMES[i], values[i]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A WAL-mode SQLite file with one row, removed (with `-wal` and
    /// `-shm`) on drop.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "doorman-sqlx-native-{name}-{}.db",
                std::process::id()
            ));
            let file = Self(path);
            file.remove();
            let conn = Connection::open(&file.0).unwrap();
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7)",
            )
            .unwrap();
            file
        }

        fn remove(&self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = self.0.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            self.remove();
        }
    }

    /// A `PASSIVE` checkpoint by `conn`: the WAL's frames, and how many of
    /// them are copied into the database file.
    fn checkpoint_by(conn: &Connection) -> (i64, i64) {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(1)?, r.get(2)?))
        })
        .unwrap()
    }

    /// Frames in the WAL after a commit through `conn`: 0 after a
    /// checkpoint copied it all, the commit's own frames once the commit
    /// started the WAL over, more while the WAL keeps growing.
    fn wal_frames(conn: &Connection) -> i64 {
        checkpoint_by(conn).0
    }

    /// A keeper on an old snapshot steps aside for the writer's catch-up:
    /// the catch-up copies the WAL to its end, and the next commit writes
    /// the WAL from its start again. Were the keeper to stay, the catch-up
    /// could copy nothing (the keeper reads the database file itself) and
    /// the WAL would grow for as long as writes come.
    #[test]
    fn the_catch_up_lets_the_wal_start_over_past_the_keeper() {
        let file = TempFile::new("catch-up");
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let writer = Connection::open_with_flags(&file.0, flags).unwrap();
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0")
            .unwrap();
        writer.wal_hook(Some(note_wal_frames));
        let keeper = Keeper::new(Connection::open_with_flags(&file.0, flags).unwrap());
        assert!(keeper.is_open());
        let keep = Keep::new(keeper);
        for v in 0..200 {
            writer.execute("INSERT INTO t VALUES (?1)", [v]).unwrap();
        }
        // The keeper stayed on its snapshot from before the inserts.
        let probe = Connection::open(&file.0).unwrap();
        assert!(wal_frames(&probe) >= 200, "the WAL holds the inserts");
        assert!(WAL_FRAMES.get() >= 200);

        WAL_FRAMES.set(RESTART_FRAMES);
        catch_up(&writer, Some(&keep));
        assert!(
            keep.keeper.lock().unwrap().as_ref().unwrap().is_open(),
            "kept again"
        );
        writer.execute("INSERT INTO t VALUES (-1)", []).unwrap();
        let frames = wal_frames(&probe);
        assert!(
            (1..10).contains(&frames),
            "the WAL did not start over: {frames} frames"
        );
        let n: i64 = probe
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 202);
    }

    /// Below the catch-up's threshold the writer does not checkpoint.
    #[test]
    fn no_catch_up_below_the_threshold() {
        let file = TempFile::new("no-catch-up");
        let writer = Connection::open(&file.0).unwrap();
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0")
            .unwrap();
        for v in 0..20 {
            writer.execute("INSERT INTO t VALUES (?1)", [v]).unwrap();
        }
        WAL_FRAMES.set(RESTART_FRAMES - 1);
        catch_up(&writer, None);
        writer.execute("INSERT INTO t VALUES (-1)", []).unwrap();
        let probe = Connection::open(&file.0).unwrap();
        assert!(wal_frames(&probe) >= 21, "the WAL went on growing");
    }

    /// After another connection's commit, the next read once the keeper's
    /// snapshot is [`KEEPER_EVERY`] old moves the keeper past it: that
    /// connection's checkpoint then copies its frames at the first try.
    /// Until then the keeper, on its snapshot from before the commit (it
    /// reads the database file itself), lets the checkpoint copy nothing.
    #[test]
    fn a_read_moves_the_keeper_past_another_connection_s_commit() {
        let file = TempFile::new("read-moves");
        let native = Native::open(&file.0, 2, Duration::from_secs(1), false).unwrap();
        let other = Connection::open(&file.0).unwrap();
        other.execute("UPDATE t SET v = 8", []).unwrap();
        let (log, copied) = checkpoint_by(&other);
        assert!(log > 0 && copied == 0, "{copied} of {log} frames copied");
        std::thread::sleep(KEEPER_EVERY * 2);
        assert_eq!(value(&native), 8);
        let (log, copied) = checkpoint_by(&other);
        assert!(log > 0 && copied == log, "{copied} of {log} frames copied");
    }

    fn value(native: &Native) -> i64 {
        native
            .read(|c| {
                c.query_row("SELECT v FROM t", [], |r| r.get(0))
                    .map_err(sqlite)
            })
            .unwrap()
    }

    #[test]
    fn a_read_takes_another_reader_while_its_home_one_is_busy() {
        let file = TempFile::new("busy-home");
        let native = Native::open(&file.0, 3, Duration::from_secs(1), false).unwrap();
        let home = thread_index() % native.readers.len();
        // Another thread holds this thread's home reader until told to let
        // go, or for 5 s. A read that waited for it would finish only once
        // the holder gave up: the holder reports which it was.
        let (held, release) = (mpsc::channel(), mpsc::channel::<()>());
        std::thread::scope(|s| {
            let readers = &native.readers;
            let holder = s.spawn(move || {
                let _guard = readers[home].lock().unwrap();
                held.0.send(()).unwrap();
                release.1.recv_timeout(Duration::from_secs(5))
            });
            held.1.recv().unwrap();
            assert!(native.readers[home].try_lock().is_err());
            assert_eq!(value(&native), 7);
            let _ = release.0.send(());
            let released = holder.join().unwrap();
            assert!(released.is_ok(), "the read waited for the busy reader");
        });
        assert_eq!(value(&native), 7);
    }
}

//! The run's working directory: the servers' logs and the SQLite files.
//!
//! A full run writes about 2 GB of SQLite files (a million minted codes
//! and the tokens of every measure), so the directory must not outlive
//! the run by default: left behind run after run, such directories once
//! filled a development machine's disk.

use std::path::{Path, PathBuf};

/// What SQLite adds to a database's name for its files: the database
/// itself, its WAL and its WAL index.
const SQLITE_FILES: [&str; 3] = ["", "-wal", "-shm"];

/// The working directory of one run, created by [`WorkDir::create`] and
/// dealt with by [`WorkDir::finish`].
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates `path` (and its parents). With `keep`, nothing in it is
    /// ever removed.
    pub fn create(path: PathBuf, keep: bool) -> Result<Self, String> {
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { path, keep })
    }

    /// Removes the SQLite database `db` and its `-wal` and `-shm` files,
    /// unless the directory is kept: once its demo has stopped, a
    /// store's database is no longer needed, and the next store's would
    /// otherwise add to it.
    pub fn drop_database(&self, db: &Path) {
        if self.keep {
            return;
        }
        for suffix in SQLITE_FILES {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            // Absent (e.g. no `-shm` in exclusive mode) is fine.
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }

    /// Ends the run's use of the directory and says what became of it,
    /// for the report's last line. Kept whole with `keep`; removed whole
    /// after a run that succeeded; after one that failed, its logs stay
    /// (they tell why) and its databases go.
    pub fn finish(self, succeeded: bool) -> String {
        let dir = self.path.display();
        if self.keep {
            return format!("logs and databases kept in {dir} (--keep)");
        }
        if succeeded {
            return match std::fs::remove_dir_all(&self.path) {
                Ok(()) => format!("logs and databases removed ({dir}; --keep keeps them)"),
                Err(e) => format!("cannot remove {dir}: {e}"),
            };
        }
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) => return format!("cannot list {dir}: {e}"),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // A database is named `*.db` here (see `run::database_url`).
            let database = SQLITE_FILES
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|db| db.ends_with(".db")));
            if database {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        format!("logs kept in {dir}, databases removed (--keep keeps them)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory with a log, a shared-mode database and an
    /// unrelated file whose name merely contains `.db`.
    fn populated(tag: &str, keep: bool) -> WorkDir {
        let path = std::env::temp_dir().join(format!(
            "doorman-bench-workdir-test-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        let dir = WorkDir::create(path, keep).expect("create");
        for f in [
            "demo-sqlite.log",
            "bench-sqlite.db",
            "bench-sqlite.db-wal",
            "bench-sqlite.db-shm",
            "notes.db.txt",
        ] {
            std::fs::write(dir.path.join(f), b"x").expect("write");
        }
        dir
    }

    fn names(path: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(path)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_successful_run_leaves_nothing() {
        let dir = populated("ok", false);
        let path = dir.path.clone();
        let said = dir.finish(true);
        assert!(!path.exists(), "{} still exists", path.display());
        assert!(said.contains("removed"), "{said}");
    }

    #[test]
    fn a_failed_run_keeps_its_logs_only() {
        let dir = populated("failed", false);
        let path = dir.path.clone();
        let said = dir.finish(false);
        assert_eq!(names(&path), ["demo-sqlite.log", "notes.db.txt"]);
        assert!(said.contains("logs kept"), "{said}");
        std::fs::remove_dir_all(&path).expect("clean up");
    }

    #[test]
    fn keep_keeps_everything() {
        for succeeded in [true, false] {
            let dir = populated(&format!("keep-{succeeded}"), true);
            let path = dir.path.clone();
            dir.drop_database(&path.join("bench-sqlite.db"));
            let said = dir.finish(succeeded);
            assert_eq!(names(&path).len(), 5, "{said}");
            std::fs::remove_dir_all(&path).expect("clean up");
        }
    }

    #[test]
    fn a_stopped_stores_database_goes_with_its_journals() {
        let dir = populated("drop", false);
        dir.drop_database(&dir.path.join("bench-sqlite.db"));
        assert_eq!(names(&dir.path), ["demo-sqlite.log", "notes.db.txt"]);
        dir.finish(true);
    }
}

//! `doorman-bench`: the load benchmark of doorman (see `BENCHMARKS.md`).
//!
//! It starts the release `doorman-demo` and, in the same run, a bare axum
//! server that does no OAuth work (this binary's `bare` subcommand), both
//! as child processes on loopback, and drives them over real HTTP/1.1
//! keep-alive connections with a fixed concurrency for a fixed time:
//! bearer check (userinfo), code exchange (pre-minted single-use codes
//! with PKCE), client credentials, introspection and the whole browser
//! flow. Any non-2xx answer makes a measure invalid. Each measure runs
//! in turns with the bare request of its shape (`GET` or form `POST`),
//! three slices each, and its ratio is to those bare slices: the box
//! drifts, and drift then touches both alike.
//! It prints req/s, p50/p99, the server's CPU time per request and the
//! ratio to the bare server for each store.
//!
//! ```text
//! cargo build --release -p doorman-demo -p doorman-bench
//! target/release/doorman-bench                 # memory, SQLite, exclusive SQLite (+ PostgreSQL with DATABASE_URL)
//! target/release/doorman-bench soak --store sqlite   # purge soak: RSS and row counts
//! ```
#![forbid(unsafe_code)]

mod bare;
mod child;
mod client;
mod flows;
mod load;
mod probe;
mod report;
mod run;
mod workdir;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
doorman-bench: load benchmark of doorman-demo against a bare axum server (loopback only)

USAGE:
    doorman-bench [OPTIONS]            run every measure on each store
    doorman-bench soak [OPTIONS]       purge soak: short TTLs, sustained flows, RSS and rows
    doorman-bench bare [ADDR]          serve the bare server (used by the benchmark itself)

OPTIONS:
    --demo PATH          the demo binary [default: doorman-demo next to this binary]
    --stores LIST        memory,sqlite,sqlite-excl,postgres [default: memory,sqlite,
                         sqlite-excl, plus postgres when DATABASE_URL is set];
                         sqlite-excl: SQLite with DOORMAN_SQLITE_EXCLUSIVE=1 (the demo
                         owns its file exclusively)
    --duration SECS      measured window per measure [default: 10]
    --warmup SECS        unmeasured warm-up per measure; each of its 3 slices (and of the
                         bare request's) gets half of it [default: 2]
    --connections N      concurrent keep-alive connections [default: 32]
    --threads N          load-generator threads [default: 2]
    --measures LIST      bearer,introspection,client_credentials,exchange,flow [default: all]
    --max-codes N        most codes minted for the exchange measure [default: 1000000]
    --demo-log FILTER    RUST_LOG of the demo [default: info, the demo's own default]
    --store NAME         soak: memory, sqlite, sqlite-excl or postgres [default: sqlite]
    --soak-secs SECS     soak: how long to load [default: 150]
    --ttl SECS           soak: code, access and refresh lifetimes [default: 5]
    --keep               keep the run's logs and SQLite files (about 2 GB for a full
                         run) in /tmp/doorman-bench-<pid>; by default they are removed,
                         except the logs of a run that failed
";

/// The measures `--measures` can pick.
pub const MEASURES: &[&str] = &[
    "bearer",
    "introspection",
    "client_credentials",
    "exchange",
    "flow",
];

/// A store the demo can run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// `doorman::MemoryStore` (`DATABASE_URL=memory:`).
    Memory,
    /// Embedded SQLite, a fresh file per run.
    Sqlite,
    /// Embedded SQLite, a fresh file per run, the demo started with
    /// `DOORMAN_SQLITE_EXCLUSIVE=1`: its store owns the file exclusively
    /// (one process), so nothing else may open it while the demo runs.
    SqliteExclusive,
    /// PostgreSQL at `DATABASE_URL`.
    Postgres(String),
}

impl StoreKind {
    /// Its short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::SqliteExclusive => "sqlite-excl",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Everything the command line sets.
#[derive(Debug, Clone)]
pub struct Opts {
    /// The demo binary.
    pub demo: PathBuf,
    /// This binary (for `bare`).
    pub me: PathBuf,
    /// Stores to measure.
    pub stores: Vec<StoreKind>,
    /// Measured window.
    pub duration: Duration,
    /// Warm-up.
    pub warmup: Duration,
    /// Connections.
    pub connections: usize,
    /// Client threads.
    pub threads: usize,
    /// Which measures to run (all by default).
    pub measures: Vec<String>,
    /// Cap on minted codes.
    pub max_codes: usize,
    /// The demo's `RUST_LOG`.
    pub demo_log: String,
    /// Soak: its store.
    pub soak_store: StoreKind,
    /// Soak: load time.
    pub soak_secs: u64,
    /// Soak: lifetimes.
    pub ttl: u64,
    /// Logs and SQLite files go here.
    pub work_dir: PathBuf,
    /// Keep `work_dir` whole after the run.
    pub keep: bool,
}

fn postgres_from_env() -> Option<StoreKind> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .map(StoreKind::Postgres)
}

fn parse_store(name: &str) -> Result<StoreKind, String> {
    match name {
        "memory" => Ok(StoreKind::Memory),
        "sqlite" => Ok(StoreKind::Sqlite),
        "sqlite-excl" => Ok(StoreKind::SqliteExclusive),
        "postgres" => {
            postgres_from_env().ok_or_else(|| "postgres needs DATABASE_URL=postgres://…".to_owned())
        }
        other => Err(format!("unknown store {other:?}")),
    }
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = me.parent().map(PathBuf::from).unwrap_or_default();
    let mut stores = vec![
        StoreKind::Memory,
        StoreKind::Sqlite,
        StoreKind::SqliteExclusive,
    ];
    stores.extend(postgres_from_env());
    let mut o = Opts {
        demo: dir.join("doorman-demo"),
        me,
        stores,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        connections: 32,
        threads: 2,
        measures: MEASURES.iter().map(|m| (*m).to_owned()).collect(),
        max_codes: 1_000_000,
        demo_log: "info".into(),
        soak_store: StoreKind::Sqlite,
        soak_secs: 150,
        ttl: 5,
        work_dir: std::env::temp_dir().join(format!("doorman-bench-{}", std::process::id())),
        keep: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: expected a number, got {v:?}"))
        };
        match flag.as_str() {
            "--demo" => o.demo = PathBuf::from(value()?),
            "--stores" => {
                o.stores = value()?
                    .split(',')
                    .map(|s| parse_store(s.trim()))
                    .collect::<Result<_, _>>()?;
            }
            "--duration" => o.duration = Duration::from_secs(num(value()?)?.clamp(1, 600)),
            "--warmup" => o.warmup = Duration::from_secs(num(value()?)?.min(60)),
            "--connections" => o.connections = num(value()?)?.clamp(1, 1024) as usize,
            "--threads" => o.threads = num(value()?)?.clamp(1, 64) as usize,
            "--measures" => {
                o.measures = value()?.split(',').map(|m| m.trim().to_owned()).collect();
                if let Some(bad) = o.measures.iter().find(|m| !MEASURES.contains(&m.as_str())) {
                    return Err(format!("unknown measure {bad:?}"));
                }
            }
            "--max-codes" => o.max_codes = num(value()?)?.clamp(100, 5_000_000) as usize,
            "--demo-log" => o.demo_log = value()?,
            "--store" => o.soak_store = parse_store(&value()?)?,
            "--soak-secs" => o.soak_secs = num(value()?)?.clamp(10, 3600),
            "--ttl" => o.ttl = num(value()?)?.clamp(1, 3600),
            "--keep" => o.keep = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = match args.first().map(String::as_str) {
        Some("bare") => {
            let addr = args
                .get(1)
                .map_or(Ok(SocketAddr::from(([127, 0, 0, 1], 0))), |a| a.parse());
            let result = match addr {
                Ok(a) if a.ip().is_loopback() => bare::serve(a),
                Ok(a) => Err(format!("{a}: the bare server listens on loopback only")),
                Err(e) => Err(format!("bad address: {e}")),
            };
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("doorman-bench bare: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some("soak") => ("soak", &args[1..]),
        _ => ("bench", &args[..]),
    };
    let opts = match parse_opts(rest) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("doorman-bench: {e}\n");
            }
            eprint!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("doorman-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let work = match workdir::WorkDir::create(opts.work_dir.clone(), opts.keep) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("doorman-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let run = async {
            if mode == "soak" {
                run::soak(&opts).await
            } else {
                run::bench(&opts, &work).await
            }
        };
        // Interrupted, the run is dropped: its servers are killed with
        // it (`kill_on_drop`), and its files are dealt with below.
        tokio::select! {
            r = run => r,
            signal = interrupted() => Err(format!("interrupted by {signal}")),
        }
    });
    let succeeded = matches!(result, Ok(true));
    if let Err(e) = &result {
        eprintln!("doorman-bench: {e}");
    }
    println!("- {}", work.finish(succeeded));
    if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Resolves at `SIGINT` or `SIGTERM`, with the signal's name; never, if
/// neither can be watched.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn stores_parse_sqlite_excl() {
        let o =
            parse_opts(&args(&["--stores", "memory, sqlite-excl,sqlite"])).expect("valid --stores");
        assert_eq!(
            o.stores,
            [
                StoreKind::Memory,
                StoreKind::SqliteExclusive,
                StoreKind::Sqlite
            ]
        );
        assert_eq!(o.stores[1].name(), "sqlite-excl");
        let o = parse_opts(&args(&["--store", "sqlite-excl"])).expect("valid --store");
        assert_eq!(o.soak_store, StoreKind::SqliteExclusive);
        assert!(parse_opts(&args(&["--stores", "sqlite-exclusive"])).is_err());
    }

    #[test]
    fn files_are_removed_unless_keep_is_given() {
        assert!(!parse_opts(&[]).expect("defaults").keep);
        let o = parse_opts(&args(&["--duration", "3", "--keep"])).expect("valid --keep");
        assert!(o.keep);
        assert_eq!(o.duration, Duration::from_secs(3));
    }

    #[test]
    fn default_stores_put_sqlite_excl_after_sqlite() {
        let o = parse_opts(&[]).expect("defaults");
        assert_eq!(
            o.stores[..3],
            [
                StoreKind::Memory,
                StoreKind::Sqlite,
                StoreKind::SqliteExclusive
            ]
        );
        // PostgreSQL only when DATABASE_URL names it, and then last.
        assert_eq!(
            o.stores.len(),
            3 + usize::from(postgres_from_env().is_some())
        );
    }
}

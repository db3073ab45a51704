//! The load generator: a fixed number of keep-alive connections, each a
//! task sending its next request as soon as the last answered (closed
//! loop), for a warm-up and then a fixed measured window.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Conn;

/// What one step of the work answered.
pub enum Step {
    /// Success (2xx, or the expected redirect inside a flow).
    Ok,
    /// Anything else: the measure becomes invalid.
    Failed(String),
    /// No more input (the pre-minted codes ran out): this connection stops.
    Exhausted,
}

/// One unit of work (a request, or a whole flow) on a connection.
pub trait Work: Send + Sync + 'static {
    /// Runs one unit.
    fn step(&self, conn: &mut Conn) -> impl Future<Output = Step> + Send;
}

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Concurrent connections.
    pub connections: usize,
    /// Unmeasured time first.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// What a measure saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Units completed inside the window.
    pub count: u64,
    /// Failed units (warm-up included): any makes the measure invalid.
    pub failures: u64,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
    /// The window actually measured (shorter when input ran out).
    pub window: Duration,
    /// Whether the input ran out before the window ended.
    pub exhausted: bool,
    /// Latencies of the units in the window, sorted, in microseconds.
    pub latencies_us: Vec<u32>,
    /// CPU time (user and system) the server's process spent in the
    /// window, when it was watched and the window ran to its end.
    pub server_cpu: Option<Duration>,
}

impl Outcome {
    /// Units per second over the window.
    pub fn rate(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        }
    }

    /// A latency percentile in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let last = self.latencies_us.len() - 1;
        let at = ((last as f64) * p).round() as usize;
        f64::from(self.latencies_us[at.min(last)]) / 1000.0
    }

    /// The server's CPU time per unit, in microseconds: what its rate
    /// follows when the server has about one core (see "How noisy a
    /// ratio is" in `BENCHMARKS.md`), and what a waiting server does not
    /// spend.
    pub fn server_cpu_us(&self) -> Option<f64> {
        let cpu = self.server_cpu.filter(|_| self.valid())?;
        Some(cpu.as_secs_f64() * 1e6 / self.count as f64)
    }

    /// Whether the number means anything.
    pub fn valid(&self) -> bool {
        self.failures == 0 && self.count > 0
    }

    /// Two slices of one measure as one: counts, windows and latencies
    /// added up, a failure of either kept.
    pub fn merge(mut self, other: Outcome) -> Outcome {
        self.count += other.count;
        self.failures += other.failures;
        self.first_failure = self.first_failure.or(other.first_failure);
        self.window += other.window;
        self.exhausted |= other.exhausted;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
        self.server_cpu = self.server_cpu.zip(other.server_cpu).map(|(a, b)| a + b);
        self
    }
}

/// Per-connection tally.
struct Tally {
    /// (completion offset from the window start, latency), both µs.
    samples: Vec<(u32, u32)>,
    failures: u64,
    first_failure: Option<String>,
    exhausted_at: Option<Instant>,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// A server under load: where its requests go, and its process (whose
/// CPU time the paired measures read).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
}

/// Runs `work` against `addr` with `shape`; returns once every connection
/// stopped (at the end of the window, or when input ran out).
pub async fn run<W: Work>(addr: SocketAddr, shape: Shape, work: Arc<W>) -> Outcome {
    run_watching(addr, None, shape, work).await
}

/// [`run`], also taking the CPU time of the server's process `pid` (if
/// given) at the window's start and end.
pub async fn run_watching<W: Work>(
    addr: SocketAddr,
    pid: Option<u32>,
    shape: Shape,
    work: Arc<W>,
) -> Outcome {
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + shape.warmup;
    let end = window_start + shape.duration;
    let cpu = pid.map(|pid| {
        tokio::spawn(async move {
            tokio::time::sleep_until(window_start.into()).await;
            let before = crate::child::cpu_time(pid);
            tokio::time::sleep_until(end.into()).await;
            crate::child::cpu_time(pid)?.checked_sub(before?)
        })
    });
    let mut tasks = Vec::with_capacity(shape.connections);
    for _ in 0..shape.connections {
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                samples: Vec::with_capacity(4096),
                failures: 0,
                first_failure: None,
                exhausted_at: None,
            };
            let mut conn = match Conn::new(addr) {
                Ok(c) => c,
                Err(e) => {
                    tally.failures += 1;
                    tally.first_failure = Some(e);
                    return tally;
                }
            };
            tokio::time::sleep_until(start.into()).await;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                match work.step(&mut conn).await {
                    Step::Ok => {
                        let done = Instant::now();
                        if began >= window_start && done <= end {
                            tally
                                .samples
                                .push((micros(done - window_start), micros(done - began)));
                        }
                    }
                    Step::Failed(why) => {
                        tally.failures += 1;
                        tally.first_failure.get_or_insert(why);
                        // A dead server must not turn this into a busy loop.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Step::Exhausted => {
                        tally.exhausted_at = Some(Instant::now());
                        break;
                    }
                }
            }
            tally
        }));
    }
    let mut tallies = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(tally) => tallies.push(tally),
            Err(e) => tallies.push(Tally {
                samples: Vec::new(),
                failures: 1,
                first_failure: Some(format!("load task failed: {e}")),
                exhausted_at: None,
            }),
        }
    }
    let exhausted_at = tallies.iter().filter_map(|t| t.exhausted_at).min();
    let window_end = exhausted_at.map_or(end, |e| e.clamp(window_start, end));
    let limit = micros(window_end - window_start);
    let mut latencies_us: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.samples.iter())
        .filter(|(at, _)| *at <= limit)
        .map(|(_, lat)| *lat)
        .collect();
    latencies_us.sort_unstable();
    let server_cpu = match cpu {
        // A window cut short by exhausted input has the server idle after it.
        Some(task) if exhausted_at.is_none() => task.await.ok().flatten(),
        Some(task) => {
            task.abort();
            None
        }
        None => None,
    };
    Outcome {
        count: latencies_us.len() as u64,
        failures: tallies.iter().map(|t| t.failures).sum(),
        first_failure: tallies.iter().find_map(|t| t.first_failure.clone()),
        window: window_end - window_start,
        exhausted: exhausted_at.is_some(),
        latencies_us,
        server_cpu,
    }
}

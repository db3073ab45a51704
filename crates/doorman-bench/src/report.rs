//! The table the benchmark prints (Markdown, so it pastes into
//! `BENCHMARKS.md` as it is).

use crate::load::Outcome;

/// Which bare measure a row is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// `GET` answering a constant.
    Get,
    /// `POST` parsing a form, answering constant JSON.
    Post,
}

impl Baseline {
    fn label(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// The measures, with their targets (ratio to the bare server) per store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Bare server `GET`.
    BareGet,
    /// Bare server `POST`.
    BarePost,
    /// Minting codes through authorize (setup of the exchange; no target).
    Authorize,
    /// `GET userinfo` with a valid token.
    Bearer,
    /// `authorization_code` with PKCE.
    Exchange,
    /// `client_credentials`.
    ClientCredentials,
    /// RFC 7662.
    Introspection,
    /// authorize → code → token → userinfo, flows/s.
    Flow,
}

impl Measure {
    /// The row's name.
    pub fn label(self) -> &'static str {
        match self {
            Self::BareGet => "bare GET",
            Self::BarePost => "bare POST (form)",
            Self::Authorize => "authorize (code mint)",
            Self::Bearer => "bearer check (userinfo)",
            Self::Exchange => "code exchange (PKCE)",
            Self::ClientCredentials => "client_credentials",
            Self::Introspection => "introspection",
            Self::Flow => "full flow (flows/s)",
        }
    }

    /// A short name, for the label of the bare row measured with this one.
    pub fn short(self) -> &'static str {
        match self {
            Self::BareGet => "bare GET",
            Self::BarePost => "bare POST",
            Self::Authorize => "code mint",
            Self::Bearer => "bearer check",
            Self::Exchange => "code exchange",
            Self::ClientCredentials => "client_credentials",
            Self::Introspection => "introspection",
            Self::Flow => "full flow",
        }
    }

    /// What the row is compared with, and the target ratio on `store`
    /// (`sqlite-excl` has SQLite's targets).
    pub fn target(self, store: &str) -> (Option<Baseline>, Option<f64>) {
        let (base, memory, sqlite) = match self {
            Self::Bearer => (Baseline::Get, 0.9, 0.6),
            Self::Exchange => (Baseline::Post, 0.5, 0.2),
            Self::ClientCredentials => (Baseline::Post, 0.6, 0.25),
            Self::Introspection => (Baseline::Post, 0.8, 0.5),
            Self::Authorize | Self::Flow => return (Some(Baseline::Get), None),
            Self::BareGet | Self::BarePost => return (None, None),
        };
        let target = match store {
            "memory" => Some(memory),
            "sqlite" | "sqlite-excl" => Some(sqlite),
            _ => None,
        };
        (Some(base), target)
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What.
    pub measure: Measure,
    /// On which store; for a bare row, in parentheses, the store and the
    /// measure it was taken with (`(memory, with bearer check)`).
    pub store: String,
    /// What the load saw; `None`: not run (see `note`).
    pub outcome: Option<Outcome>,
    /// The bare server's rate this row is compared with: the bare slices
    /// measured in turns with it, or (code mint) the bare measure right
    /// before it (`None` when that one was invalid).
    pub bare_rate: Option<f64>,
    /// The ratio of each slice to the bare slice right before it, for a
    /// measure taken in turns (empty otherwise): how far one slice's
    /// ratio strays from the pooled one.
    pub slice_ratios: Vec<f64>,
    /// Anything worth saying.
    pub note: String,
}

impl Row {
    /// Whether the row met its target (`None`: no target or not run).
    pub fn passed(&self) -> Option<bool> {
        let (_, target) = self.measure.target(&self.store);
        let ratio = self.ratio()?;
        target.map(|t| ratio >= t)
    }

    /// The ratio to the bare server.
    pub fn ratio(&self) -> Option<f64> {
        let o = self.outcome.as_ref().filter(|o| o.valid())?;
        let bare = self.bare_rate.filter(|b| *b > 0.0)?;
        Some(o.rate() / bare)
    }

    /// Whether the measure ran and is invalid.
    pub fn invalid(&self) -> bool {
        self.outcome.as_ref().is_some_and(|o| !o.valid())
    }
}

/// The table, in Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measure | store | req/s | p50 ms | p99 ms | server CPU µs | ratio to bare | target | result |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let (base, target) = r.measure.target(&r.store);
        let target = match (base, target) {
            (Some(b), Some(t)) => format!("≥ {t:.2}× {}", b.label()),
            _ => "-".into(),
        };
        let (rate, p50, p99, result) = match &r.outcome {
            None => ("-".into(), "-".into(), "-".into(), r.note.clone()),
            Some(o) if !o.valid() => (
                "INVALID".into(),
                "-".into(),
                "-".into(),
                format!(
                    "{} failed, first: {}",
                    o.failures,
                    o.first_failure.as_deref().unwrap_or("no request completed")
                ),
            ),
            Some(o) => {
                let verdict = match r.passed() {
                    Some(true) => "PASS",
                    Some(false) => "MISS",
                    None => "",
                };
                let mut result = verdict.to_owned();
                if !r.note.is_empty() {
                    if !result.is_empty() {
                        result.push_str("; ");
                    }
                    result.push_str(&r.note);
                }
                (
                    format!("{:.0}", o.rate()),
                    format!("{:.2}", o.percentile_ms(0.5)),
                    format!("{:.2}", o.percentile_ms(0.99)),
                    result,
                )
            }
        };
        let cpu = r
            .outcome
            .as_ref()
            .and_then(Outcome::server_cpu_us)
            .map_or_else(|| "-".into(), |us| format!("{us:.1}"));
        let ratio = match (r.ratio(), base) {
            (Some(x), Some(b)) => format!("{x:.2}× {}{}", b.label(), spread(&r.slice_ratios)),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {rate} | {p50} | {p99} | {cpu} | {ratio} | {target} | {result} |\n",
            r.measure.label(),
            r.store,
        ));
    }
    out
}

/// ` (slices 0.80–0.93)`: the lowest and highest slice ratio, when there
/// were at least two slices.
fn spread(ratios: &[f64]) -> String {
    if ratios.len() < 2 {
        return String::new();
    }
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" (slices {lo:.2}–{hi:.2})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_names_the_lowest_and_highest_slice() {
        assert_eq!(spread(&[]), "");
        assert_eq!(spread(&[0.9]), "");
        assert_eq!(spread(&[0.86, 0.8, 0.931]), " (slices 0.80–0.93)");
    }

    fn row(server_cpu: Option<std::time::Duration>) -> Row {
        Row {
            measure: Measure::Bearer,
            store: "memory".into(),
            outcome: Some(Outcome {
                count: 1000,
                failures: 0,
                first_failure: None,
                window: std::time::Duration::from_secs(1),
                exhausted: false,
                latencies_us: vec![100; 1000],
                server_cpu,
            }),
            bare_rate: Some(1000.0),
            slice_ratios: Vec::new(),
            note: String::new(),
        }
    }

    /// The cells of the table's last line.
    fn last_cells(t: &str) -> Vec<String> {
        let line = t.lines().last().unwrap_or_default();
        line.split('|').map(|c| c.trim().to_owned()).collect()
    }

    #[test]
    fn the_table_gives_the_server_cpu_per_request() {
        let ms = std::time::Duration::from_millis;
        // 12 ms of CPU over 1000 requests.
        assert_eq!(last_cells(&table(&[row(Some(ms(12)))]))[6], "12.0");
        assert_eq!(last_cells(&table(&[row(None)]))[6], "-");
        // Slices merge their CPU only when every slice has one.
        let both = row(Some(ms(12))).outcome.and_then(|a| {
            let b = row(Some(ms(8))).outcome?;
            a.merge(b).server_cpu_us()
        });
        assert_eq!(both, Some(10.0));
        let one = row(Some(ms(12)))
            .outcome
            .zip(row(None).outcome)
            .and_then(|(a, b)| a.merge(b).server_cpu_us());
        assert_eq!(one, None);
    }

    #[test]
    fn sqlite_excl_has_sqlite_targets() {
        for m in [
            Measure::Bearer,
            Measure::Introspection,
            Measure::ClientCredentials,
            Measure::Exchange,
        ] {
            assert_eq!(m.target("sqlite-excl"), m.target("sqlite"));
            assert!(m.target("sqlite-excl").1.is_some());
        }
        assert_eq!(
            Measure::BareGet.target("(sqlite-excl, with bearer check)"),
            (None, None)
        );
    }
}

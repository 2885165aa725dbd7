//! The figures a phase measures, each beside its reference and judged against its target,
//! and the report: a table on stdout and `target/bench/results.json`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::machine::During;

/// What the benchmark is doing now, on stderr.
pub(super) fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// A phase's figures as soon as they are measured.
pub(super) fn show(figures: &[Figure]) {
    for figure in figures {
        let reference = figure
            .reference
            .map(|(value, what)| format!(" vs {} ({what})", number(value, figure.unit)))
            .unwrap_or_default();
        eprintln!(
            "bench:   {}: {}{reference} {}",
            figure.name,
            number(figure.value, figure.unit),
            figure.result_text()
        );
    }
}

/// Percentiles of a set of samples.
#[derive(Debug, Clone, Copy)]
pub(super) struct Summary {
    pub(super) p50: Duration,
    pub(super) p99: Duration,
    pub(super) max: Duration,
}

impl Summary {
    /// Nearest-rank percentiles.
    pub(super) fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let rank = |p: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let index = ((samples.len() as f64) * p).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

pub(super) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[derive(Debug, Clone, Copy)]
enum Target {
    RatioAtMost(f64),
    RatioAtLeast(f64),
    AtMost(f64),
}

/// One measured figure: its value, what it is measured against, its target and the verdict.
#[derive(Debug, Clone)]
pub(super) struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    reference: Option<(f64, &'static str)>,
    target: Option<Target>,
    /// `None` when the figure has no target (it is reported only).
    pub(super) pass: Option<bool>,
    notes: Vec<String>,
    /// What the machine did while the figure's phase ran.
    during: Option<During>,
}

impl Figure {
    pub(super) fn new(name: &'static str, value: f64, unit: &'static str) -> Self {
        Self {
            name,
            value,
            unit,
            reference: None,
            target: None,
            pass: None,
            notes: Vec::new(),
            during: None,
        }
    }

    /// Tags the figure with what the machine did during its phase; a noisy phase says so in
    /// the figure's notes.
    pub(super) fn during(mut self, during: During) -> Self {
        if during.noisy() {
            self.notes.push(format!(
                "noisy: other processes kept {:.1} cores busy during its phase",
                during.others_cores.unwrap_or(0.0)
            ));
        }
        self.during = Some(during);
        self
    }

    fn load_text(&self) -> String {
        match self.during.and_then(|during| during.load) {
            Some(load) if self.during.is_some_and(|during| during.noisy()) => {
                format!("{load:.2} (noisy)")
            }
            Some(load) => format!("{load:.2}"),
            None => "—".into(),
        }
    }

    pub(super) fn against(mut self, reference: f64, what: &'static str) -> Self {
        self.reference = Some((reference, what));
        self
    }

    pub(super) fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.reference.map(|(reference, _)| self.value / reference)
    }

    fn judged(mut self, target: Target) -> Self {
        self.target = Some(target);
        self.pass = match target {
            Target::RatioAtMost(limit) => self.ratio().map(|ratio| ratio <= limit),
            Target::RatioAtLeast(limit) => self.ratio().map(|ratio| ratio >= limit),
            Target::AtMost(limit) => Some(self.value <= limit),
        };
        self
    }

    pub(super) fn ratio_at_most(self, limit: f64) -> Self {
        self.judged(Target::RatioAtMost(limit))
    }

    pub(super) fn ratio_at_least(self, limit: f64) -> Self {
        self.judged(Target::RatioAtLeast(limit))
    }

    pub(super) fn at_most(self, limit: f64) -> Self {
        self.judged(Target::AtMost(limit))
    }

    fn target_text(&self) -> String {
        match self.target {
            Some(Target::RatioAtMost(limit)) => format!("ratio ≤ {limit}"),
            Some(Target::RatioAtLeast(limit)) => format!("ratio ≥ {limit}"),
            Some(Target::AtMost(limit)) => format!("≤ {limit} {}", self.unit),
            None => "reported".into(),
        }
    }

    fn result_text(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "—",
        }
    }

    fn json(&self) -> Value {
        json!({
            "figure": self.name,
            "value": round(self.value),
            "unit": self.unit,
            "reference": self.reference.map(|(value, _)| round(value)),
            "reference_is": self.reference.map(|(_, what)| what),
            "ratio": self.ratio().map(round),
            "target": self.target.map(|_| self.target_text()),
            "result": self.pass.map(|pass| if pass { "PASS" } else { "MISS" }),
            "load_average": self.during.and_then(|during| during.load),
            "other_processes_cores": self.during.and_then(|during| during.others_cores).map(round),
            "notes": self.notes,
        })
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn number(value: f64, unit: &str) -> String {
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {unit}")
}

/// Prints the table (and the figures' notes) and writes `target/bench/results.json`.
pub(super) fn publish(figures: &[Figure]) -> anyhow::Result<()> {
    let rows: Vec<[String; 7]> = figures
        .iter()
        .map(|figure| {
            [
                figure.name.to_owned(),
                number(figure.value, figure.unit),
                figure
                    .reference
                    .map(|(value, what)| format!("{} ({what})", number(value, figure.unit)))
                    .unwrap_or_else(|| "—".into()),
                figure
                    .ratio()
                    .map(|ratio| format!("{ratio:.2}"))
                    .unwrap_or_else(|| "—".into()),
                figure.target_text(),
                figure.result_text().to_owned(),
                figure.load_text(),
            ]
        })
        .collect();
    let header = [
        "figure",
        "value",
        "reference",
        "ratio",
        "target",
        "result",
        "load (1 min)",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 7]| {
        let mut text = String::from("|");
        for (cell, width) in cells.iter().zip(widths) {
            let pad = width - cell.chars().count();
            let _ = write!(text, " {cell}{} |", " ".repeat(pad));
        }
        text
    };
    let mut table = String::new();
    table.push_str(&line(&header.map(String::from)));
    table.push('\n');
    table.push('|');
    for width in widths {
        let _ = write!(table, "{}|", "-".repeat(width + 2));
    }
    table.push('\n');
    for row in &rows {
        table.push_str(&line(row));
        table.push('\n');
    }
    println!("\n{table}");
    for figure in figures.iter().filter(|figure| !figure.notes.is_empty()) {
        println!("{}: {}", figure.name, figure.notes.join("; "));
    }

    let results = json!({
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        },
        "figures": figures.iter().map(Figure::json).collect::<Vec<_>>(),
    });
    let path = super::bench_dir().join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("cannot write {path:?}"))?;
    println!("\nwritten to {}", path.display());
    Ok(())
}

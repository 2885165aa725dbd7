//! What the machine was doing while a phase ran: its load average, and how much CPU processes
//! other than the benchmark's own (this process, the handlers and Azurites it started) took.
//! A phase during which others held a core measured a shared machine: its figures are noisy,
//! and the report says so beside them.

use std::collections::HashMap;
use std::time::Instant;

/// Other processes' CPU, in cores on average over a phase, from which a phase counts as noisy.
const NOISY_CORES: f64 = 0.5;

/// A phase being watched.
pub(super) struct Watch {
    started: Instant,
    machine_busy: Option<u64>,
    own: u64,
}

/// What the machine did during a phase.
#[derive(Debug, Clone, Copy)]
pub(super) struct During {
    /// The 1-minute load average at the phase's end.
    pub(super) load: Option<f64>,
    /// Cores that processes other than the benchmark's kept busy, on average over the phase.
    pub(super) others_cores: Option<f64>,
}

impl During {
    pub(super) fn noisy(&self) -> bool {
        self.others_cores.is_some_and(|cores| cores >= NOISY_CORES)
    }
}

impl Watch {
    pub(super) fn start() -> Self {
        Self {
            started: Instant::now(),
            machine_busy: machine_busy_ticks(),
            own: own_ticks(),
        }
    }

    pub(super) fn stop(self) -> During {
        let wall = self.started.elapsed().as_secs_f64();
        let others_cores = match (self.machine_busy, machine_busy_ticks()) {
            (Some(before), Some(after)) if wall > 0.0 => {
                let busy = after.saturating_sub(before);
                let own = own_ticks().saturating_sub(self.own);
                Some(busy.saturating_sub(own) as f64 / ticks_per_second() / wall)
            }
            _ => None,
        };
        During {
            load: load_average(),
            others_cores,
        }
    }
}

/// The 1-minute load average (`/proc/loadavg`).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks the whole machine spent busy (`/proc/stat`: every CPU time but idle and
/// iowait).
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some(total - idle)
}

/// Clock ticks this process and every process under it have used, the reaped ones included
/// (their time is in their parents' children's times).
fn own_ticks() -> u64 {
    let mut parents: HashMap<u32, u32> = HashMap::new();
    let mut ticks: HashMap<u32, u64> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        if let Some((parent, used)) = process_ticks(pid) {
            parents.insert(pid, parent);
            ticks.insert(pid, used);
        }
    }
    let me = std::process::id();
    ticks
        .iter()
        .filter(|(&pid, _)| {
            let mut at = pid;
            // Walk up to the first process (or a loop): ours if it passes through this one.
            for _ in 0..64 {
                if at == me {
                    return true;
                }
                match parents.get(&at) {
                    Some(&parent) if parent != 0 && parent != at => at = parent,
                    _ => return false,
                }
            }
            false
        })
        .map(|(_, used)| used)
        .sum()
}

/// A process's parent, and its user and system ticks with those of its reaped children
/// (`/proc/<pid>/stat` fields 4 and 14 to 17).
fn process_ticks(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields follow the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let parent = fields.get(1)?.parse().ok()?;
    let used = fields
        .get(11..15)?
        .iter()
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    Some((parent, used))
}

/// Clock ticks per second: 100 on Linux, whose `/proc` speaks in them.
fn ticks_per_second() -> f64 {
    100.0
}

//! The host log: the handler's stdout and stderr lines, read from its pipes on threads of
//! their own, with the simulator's own lines (starts, exits, invocation logs) among them in
//! arrival order.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogSource {
    /// Handler stdout: Information in the host log.
    Stdout,
    /// Handler stderr: Error in the host log.
    Stderr,
    /// The simulator's own lines (starts, exits, invocation logs).
    Host,
}

/// Lines in arrival order, shared with the threads that read the handler's pipes.
#[derive(Debug, Clone, Default)]
pub(super) struct HostLog {
    lines: Arc<Mutex<Vec<(LogSource, String)>>>,
}

impl HostLog {
    fn push(&self, source: LogSource, text: String) {
        self.lines.lock().expect("log lock").push((source, text));
    }

    pub(super) fn host(&self, text: impl Into<String>) {
        self.push(LogSource::Host, text.into());
    }

    pub(super) fn render(&self) -> String {
        self.render_since(0)
    }

    /// How many lines there are so far: a mark for [`render_since`](Self::render_since).
    pub(super) fn len(&self) -> usize {
        self.lines.lock().expect("log lock").len()
    }

    /// The lines from the `mark`-th on.
    pub(super) fn render_since(&self, mark: usize) -> String {
        let lines = self.lines.lock().expect("log lock");
        let mut out = String::new();
        for (source, text) in lines.iter().skip(mark) {
            if *source == LogSource::Host {
                out.push_str("[host] ");
            }
            out.push_str(text);
            out.push('\n');
        }
        out
    }

    pub(super) fn lines_from(&self, wanted: LogSource) -> Vec<String> {
        let lines = self.lines.lock().expect("log lock");
        lines
            .iter()
            .filter(|(source, _)| *source == wanted)
            .map(|(_, text)| text.clone())
            .collect()
    }

    /// Reads `stream` line by line on a thread of its own until the pipe closes.
    pub(super) fn capture(
        &self,
        stream: impl Read + Send + 'static,
        source: LogSource,
    ) -> JoinHandle<()> {
        let log = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        log.push(source, text.trim_end_matches(['\n', '\r']).to_owned());
                    }
                }
            }
        })
    }
}

/// Waits (briefly) for the pipe readers of an exited process, so its last lines are in the log.
pub(super) fn drain(readers: &mut Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while readers.iter().any(|reader| !reader.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for reader in readers.drain(..) {
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

//! The progress line: rate, peers and ETA on stderr; redrawn in place on a terminal, one line
//! every few seconds otherwise (logs, CI).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use sluice_node::{Progress, TorrentHandle};

pub(crate) fn human_rate(bytes_per_s: u64) -> String {
    format!("{:.1} MB/s", bytes_per_s as f64 / 1e6)
}

pub(crate) fn eta(left: u64, rate: u64) -> String {
    if rate == 0 {
        return "--:--".into();
    }
    let s = left / rate;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn line(name: &str, p: &Progress, total_pieces: u32) -> String {
    let s = &p.stats;
    let pct = if total_pieces == 0 { 100.0 } else { 100.0 * f64::from(s.pieces_have) / f64::from(total_pieces) };
    format!(
        "{name}: {pct:5.1}% {}/{} pieces, {} down, {} up, {} peers, ETA {}",
        s.pieces_have,
        total_pieces,
        human_rate(s.download_rate),
        human_rate(s.upload_rate),
        s.peers_connected,
        eta(s.bytes_wanted_left, s.download_rate)
    )
}

/// Redraws progress until the download completes; errors if the torrent stopped on a failure
/// or the user interrupted it (Ctrl-C, SIGTERM: the caller then shuts down gracefully).
pub async fn watch_download(handle: &TorrentHandle, name: &str, total_pieces: u32) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let every = if tty { Duration::from_millis(250) } else { Duration::from_secs(2) };
    let mut rx = handle.watch();
    let mut last: Option<Instant> = None;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let p = rx.borrow_and_update().clone();
        if let Some(e) = p.error {
            anyhow::bail!("download stopped: {e}");
        }
        if last.is_none_or(|t| t.elapsed() >= every) || p.complete {
            last = Some(Instant::now());
            let l = line(name, &p, total_pieces);
            let mut err = std::io::stderr().lock();
            let _ = if tty { write!(err, "\r\x1b[2K{l}") } else { writeln!(err, "{l}") };
        }
        if p.complete {
            if tty {
                eprintln!();
            }
            eprintln!("complete: every file verified");
            return Ok(());
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the torrent stopped before completing");
                }
            }
            _ = &mut stop => {
                if tty {
                    eprintln!();
                }
                anyhow::bail!("interrupted; verified pieces are kept and the next run resumes from them");
            }
        }
    }
}

/// Seeds until Ctrl-C (or SIGTERM), printing a status line now and then.
pub async fn watch_seed(handle: &TorrentHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {
                let p = handle.progress();
                eprintln!("seeding: {} peers, {} up, {} bytes uploaded", p.stats.peers_connected, human_rate(p.stats.upload_rate), p.stats.uploaded);
            }
        }
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// One status line for the commands that wait on a server (`add --wait`, `stream`): redrawn in
/// place with a spinner when stderr is a terminal, else a plain line now and then (logs,
/// scripts, CI), so a pipe never fills with redraws.
#[derive(Debug)]
pub(crate) struct StatusLine {
    tty: bool,
    last: Option<Instant>,
    drawn: bool,
    spin: usize,
}

impl StatusLine {
    const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

    pub(crate) fn new() -> StatusLine {
        StatusLine { tty: std::io::stderr().is_terminal(), last: None, drawn: false, spin: 0 }
    }

    /// Shows `text` (throttled: every 100 ms on a terminal, every 5 s otherwise).
    pub(crate) fn update(&mut self, text: &str) {
        let every = if self.tty { Duration::from_millis(100) } else { Duration::from_secs(5) };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        if self.tty {
            self.spin = (self.spin + 1) % Self::SPINNER.len();
            let _ = write!(err, "\r\x1b[2K{} {text}", Self::SPINNER[self.spin]);
            let _ = err.flush();
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{text}");
        }
    }

    /// Replaces the line with `text`, which stays.
    pub(crate) fn finish(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
    }

    /// Removes the line (before other output, or when the wait ends in an error).
    pub(crate) fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
        self.last = None;
    }
}

/// A text bar of `width` cells, `fraction` of them filled.
pub(crate) fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// Bytes in decimal units, as rates are shown.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

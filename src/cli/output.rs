//! How operator commands talk to a person: tables cut to the terminal's width, a progress bar
//! on a terminal (a plain count otherwise), and confirmation prompts. `--json` output skips all
//! of this and prints one JSON value per line.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::dlq::ActionSummary;

/// Width used when stdout is no terminal and `COLUMNS` is not set.
const DEFAULT_WIDTH: usize = 120;
/// Narrowest width a table is cut to.
const MIN_WIDTH: usize = 60;

/// The width to fit tables to: `COLUMNS`, else the terminal's, else 120.
pub fn width() -> usize {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
    {
        return cols.max(MIN_WIDTH);
    }
    terminal_columns().unwrap_or(DEFAULT_WIDTH).max(MIN_WIDTH)
}

#[cfg(unix)]
fn terminal_columns() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only writes a `winsize` into the pointer it is given, which lives on
    // this stack frame for the whole call.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(size.ws_col as usize)
}

#[cfg(not(unix))]
fn terminal_columns() -> Option<usize> {
    None
}

/// `text` in at most `max` characters, an ellipsis marking a cut; control characters (a
/// newline in a provider's message) become spaces so a row stays one line.
pub fn cut(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut out: String = clean.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A table printed row by row (so a long listing starts at once): fixed widths for every
/// column but the last, which gets what is left of the terminal.
pub struct Table {
    widths: Vec<usize>,
    last: usize,
}

impl Table {
    /// A table with these headers and widths (the last width is the least for the last column),
    /// its header printed.
    pub fn new(columns: &[(&str, usize)]) -> Table {
        let fixed: usize = columns[..columns.len() - 1]
            .iter()
            .map(|(_, w)| w + 2)
            .sum();
        let least = columns[columns.len() - 1].1;
        let table = Table {
            widths: columns.iter().map(|(_, w)| *w).collect(),
            last: width().saturating_sub(fixed).max(least),
        };
        let headers: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
        table.row(&headers);
        table
    }

    /// Print one row, each cell cut to its column.
    pub fn row(&self, cells: &[String]) {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(&cut(cell, self.last));
            } else {
                let w = self.widths[i];
                line.push_str(&format!("{:<w$}  ", cut(cell, w)));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// How long ago `ms` (Unix epoch) was, short: `45s`, `12m`, `3h`, `2d`.
pub fn age(ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(ms) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

/// Whether a person can be asked: stdin and stderr are both terminals.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Ask `question` on stderr; true only for an answer starting with `y`.
pub fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    answer.trim().to_ascii_lowercase().starts_with('y')
}

/// Progress of a bulk replay or purge on stderr: a bar redrawn in place on a terminal; otherwise
/// (logs, CI) a plain count, at most once a second and every [`Progress::PLAIN_EVERY`] entries
/// at most, so a million entries do not flood the log.
pub struct Progress {
    tty: bool,
    total: Option<u64>,
    drawn: Option<Instant>,
    printed: u64,
}

impl Progress {
    /// Entries between two plain progress lines.
    pub const PLAIN_EVERY: u64 = 1000;
    const REDRAW: Duration = Duration::from_millis(100);
    const PLAIN_INTERVAL: Duration = Duration::from_secs(1);

    /// Progress towards `total` entries, when known.
    pub fn new(total: Option<u64>) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            total,
            drawn: None,
            printed: 0,
        }
    }

    /// Show the summary so far.
    pub fn update(&mut self, s: &ActionSummary) {
        let done = s.processed();
        if self.tty {
            if self.drawn.is_some_and(|t| t.elapsed() < Self::REDRAW) {
                return;
            }
            self.drawn = Some(Instant::now());
            let bar = match self.total {
                Some(total) if total > 0 => {
                    let filled = ((done.min(total) * 30) / total) as usize;
                    format!(
                        "[{}{}] {done}/{total}",
                        "#".repeat(filled),
                        ".".repeat(30 - filled)
                    )
                }
                _ => format!("{done}"),
            };
            eprint!("\r{bar}  {} {}", s.action.done_name(), s.done);
            let _ = std::io::stderr().flush();
        } else if done >= self.printed + Self::PLAIN_EVERY
            && self
                .drawn
                .is_none_or(|t| t.elapsed() >= Self::PLAIN_INTERVAL)
        {
            self.printed = done;
            self.drawn = Some(Instant::now());
            eprintln!("{done} processed, {} {}", s.done, s.action.done_name());
        }
    }

    /// End the bar's line.
    pub fn finish(&self) {
        if self.tty && self.drawn.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_cut_with_an_ellipsis_and_kept_on_one_line() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("APNs 400 BadDeviceToken", 10), "APNs 400 …");
        assert_eq!(cut("a\nb", 10), "a b");
        assert_eq!(cut("ééééé", 3), "éé…");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(0, 45_000), "45s");
        assert_eq!(age(0, 720_000), "12m");
        assert_eq!(age(0, 3 * 3_600_000), "3h");
        assert_eq!(age(0, 3 * 86_400_000), "3d");
        assert_eq!(age(10, 0), "0s");
    }
}

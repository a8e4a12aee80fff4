//! Logging setup: tracing to stderr (the journal under systemd), text or JSON, every line
//! masked for ID and mobile numbers, Beijing timestamps, journald priorities under systemd.

use std::io::{IsTerminal, Write};
use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// `RUST_LOG` wins over the configured level so an operator can raise it for one run. The
/// scheduler's own info lines (one per interval run) are kept out of the configured level, and
/// so are odbc-api's: it logs every driver diagnostic at warn, also those qianzhi reports itself
/// with their context and those that mean nothing (a driver of ODBC 3.0 answering a 3.5 request).
/// Colours only on a terminal (never into files or the journal); under systemd
/// (`JOURNAL_STREAM` set) every line starts with its syslog priority, so
/// `journalctl -p err` finds `JOB STOPPED`.
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{level},tokio_cron_scheduler=warn,odbc_api=error"))
    });
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Masked {
            inner: std::io::stderr,
            priorities: journald,
        })
        .with_ansi(std::io::stderr().is_terminal())
        .with_timer(BeijingTime)
        .with_target(false);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Timestamps in Beijing time with their offset (`2026-11-30T15:39:47.123+08:00`): the time
/// the DBA reads everywhere else (qz_ tables, Cd_Batch), whatever the host's zone.
pub struct BeijingTime;

impl FormatTime for BeijingTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = crate::timefmt::now_beijing();
        write!(w, "{}", now.format("%Y-%m-%dT%H:%M:%S%.3f%:z"))
    }
}

/// The sd-daemon(3) priority prefix journald reads at the start of a line.
fn priority(level: &Level) -> &'static [u8] {
    match *level {
        Level::ERROR => b"<3>",
        Level::WARN => b"<4>",
        Level::INFO => b"<6>",
        _ => b"<7>",
    }
}

/// Makes writers that mask each formatted event before it reaches the inner writer. Masking
/// here, once, covers every field of every log line, whichever module wrote it and whatever
/// value a message quotes.
#[derive(Clone, Copy)]
pub struct Masked<M> {
    pub inner: M,
    /// Start each line with its journald priority.
    pub priorities: bool,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Masked<M> {
    type Writer = MaskedEvent<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedEvent {
            buf: Vec::with_capacity(256),
            inner: self.inner.make_writer(),
            prefix: b"",
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let mut w = self.make_writer();
        if self.priorities {
            w.prefix = priority(meta.level());
        }
        w
    }
}

/// Collects one event (the formatter may write it in pieces) and writes it masked on drop,
/// so a number split across two writes is still seen whole.
pub struct MaskedEvent<W: Write> {
    buf: Vec<u8>,
    inner: W,
    prefix: &'static [u8],
}

impl<W: Write> Write for MaskedEvent<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for MaskedEvent<W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let mut line = self.prefix.to_vec();
        line.extend_from_slice(crate::mask::mask_pii(&text).as_bytes());
        let mut write = || {
            let _ = self.inner.write_all(&line);
            let _ = self.inner.flush();
        };
        // A progress line on the terminal is lifted while the log line is written, so the two
        // never run into each other.
        match PROGRESS.lock().ok().and_then(|p| p.clone()) {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// The progress line `qianzhi once` draws on a terminal, if any (see [`show_progress`]).
static PROGRESS: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Log lines are written above `bar` while it is shown; None when it is gone.
pub fn show_progress(bar: Option<indicatif::ProgressBar>) {
    if let Ok(mut p) = PROGRESS.lock() {
        *p = bar;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(json: bool) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(Masked {
                inner: move || sink.clone(),
                priorities: false,
            })
            .with_ansi(false);
        let emit = || {
            tracing::warn!(
                value = "身份证610431198603210047",
                "的值 '13812345678' 不在代码集中；id_11010519491231002X"
            )
        };
        if json {
            tracing::subscriber::with_default(builder.json().finish(), emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn every_log_line_is_masked() {
        for json in [false, true] {
            let line = logged(json);
            for raw in ["610431198603210047", "13812345678", "11010519491231002X"] {
                assert!(!line.contains(raw), "{raw} in {line}");
            }
            for masked in [
                "身份证610431********0047",
                "'138****5678'",
                "id_110105********002X",
            ] {
                assert!(line.contains(masked), "{masked} not in {line}");
            }
        }
    }

    #[test]
    fn journald_priorities_and_beijing_time() {
        let out = Captured::default();
        let sink = out.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(Masked {
                inner: move || sink.clone(),
                priorities: true,
            })
            .with_ansi(false)
            .with_timer(BeijingTime)
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::error!("JOB STOPPED: x");
            tracing::warn!("w");
            tracing::info!("i");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (line, p) in lines.iter().zip(["<3>", "<4>", "<6>"]) {
            assert!(line.starts_with(p), "{line}");
            assert!(line.contains("+08:00"), "{line}");
            assert!(!line.contains('\u{1b}'), "no ANSI escapes: {line}");
        }
    }
}

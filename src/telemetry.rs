//! Logging setup: tracing to stderr (the journal under systemd), text or JSON, every line
//! masked for ID and mobile numbers.

use std::io::Write;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// `RUST_LOG` wins over the configured level so an operator can raise it for one run. The
/// scheduler's own info lines (one per interval run) are kept out of the configured level.
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},tokio_cron_scheduler=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Masked(std::io::stderr))
        .with_target(false);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Makes writers that mask each formatted event before it reaches the inner writer. Masking
/// here, once, covers every field of every log line, whichever module wrote it and whatever
/// value a message quotes.
#[derive(Clone, Copy)]
pub struct Masked<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Masked<M> {
    type Writer = MaskedEvent<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedEvent {
            buf: Vec::with_capacity(256),
            inner: self.0.make_writer(),
        }
    }
}

/// Collects one event (the formatter may write it in pieces) and writes it masked on drop,
/// so a number split across two writes is still seen whole.
pub struct MaskedEvent<W: Write> {
    buf: Vec<u8>,
    inner: W,
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
        let _ = self
            .inner
            .write_all(crate::mask::mask_pii(&text).as_bytes());
        let _ = self.inner.flush();
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
            .with_writer(Masked(move || sink.clone()))
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
}

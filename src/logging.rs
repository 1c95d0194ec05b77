//! Logging for narun's daemons, its CLI and the apps built on
//! [`crate::consumer`]: one call, [`init`], sets up [`tracing`] so that
//!
//! - on a terminal, events are coloured text on stderr (for the management
//!   commands, [`Format::Command`]: `narun: warning: ...` lines);
//! - when stderr is not a terminal (a pipe, a file), or `NO_COLOR` is set
//!   (<https://no-color.org>), or `TERM=dumb`, the text has no escape codes;
//! - under systemd, when stderr is the journal (`JOURNAL_STREAM` names it),
//!   events go to journald natively: `MESSAGE` is the event as one line of
//!   text (message and fields, as `narun logs` and `journalctl -u` show it),
//!   `PRIORITY` its level (error 3, warn 4, info 6, debug and trace 7), and
//!   each field is a journal field of its own (`error` → `ERROR`; names
//!   journald or narun give a meaning, `PRIORITY`, `NARUN_APP`, ..., get
//!   an `F_` prefix), beside `TARGET`, `CODE_FILE` and `CODE_LINE`:
//!   `journalctl -o verbose` shows them all. `SYSLOG_IDENTIFIER` is the
//!   app's name under narun node (`NARUN_APP_NAME`, as its unit names its
//!   output), else the program's.
//!
//! The filter is `RUST_LOG`, else `LOG_LEVEL` (the Go narun's variable),
//! else the default given to [`init`]; async-nats' own connection events,
//! which narun logs itself, are kept at `warn` unless asked for (a default
//! of debug or trace, or one naming `async_nats`).
//!
//! ```no_run
//! narun::logging::init("info");
//! tracing::info!(port = 8080, "serving");
//! ```

use std::io::{IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{dynamic_filter_fn, EnvFilter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Text for people (journald's native fields under systemd).
    Text,
    /// One JSON object per line on stderr, for log shippers (also under
    /// systemd).
    Json,
    /// For a person running a command (`narun deploy`): one line per
    /// event, `narun: warning: <message> key=value`, no time, no module,
    /// like the commands' own messages.
    Command,
}

/// [`Format::Command`]'s lines.
struct CommandLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for CommandLines
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(writer, "narun: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Set up logging as described in the [module](self) docs, as text.
/// Does nothing if a `tracing` subscriber is already set.
pub fn init(default_filter: &str) {
    init_with(Format::Text, default_filter);
}

/// [`init`] with a choice of [`Format`].
pub fn init_with(format: Format, default_filter: &str) {
    let output: Box<dyn Layer<Registry> + Send + Sync> = match format {
        Format::Command => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .event_format(CommandLines)
            .boxed(),
        Format::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        Format::Text => match stderr_is_journal().then(Journald::connect) {
            Some(Ok(journald)) => journald.boxed(),
            // Not under systemd, or its journal socket cannot be reached
            // (then stderr still goes to the journal, as plain text).
            _ => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour_wanted())
                .boxed(),
        },
    };
    let muted = dynamic_filter_fn(|meta, _| {
        !(NATS_MUTED.load(Ordering::Relaxed) && is_nats_connection_event(meta.target()))
    });
    let _ = tracing_subscriber::registry()
        .with(
            output
                .with_filter(muted)
                .with_filter(env_filter(default_filter)),
        )
        .try_init();
}

/// From now on NATS connection events (disconnected, reconnect failures)
/// are not logged: the process is stopping and takes its NATS server down
/// itself (`narun dev`), so they are expected, not news.
pub fn mute_nats_connection_events() {
    NATS_MUTED.store(true, Ordering::Relaxed);
}

static NATS_MUTED: AtomicBool = AtomicBool::new(false);

fn is_nats_connection_event(target: &str) -> bool {
    target == "narun::nats" || target == "async_nats" || target.starts_with("async_nats::")
}

/// `RUST_LOG`, else `LOG_LEVEL`, else `default` (with async-nats at warn,
/// unless `default` names it or asks for debug or trace).
fn env_filter(default: &str) -> EnvFilter {
    let default = if ["async_nats", "debug", "trace"]
        .iter()
        .any(|w| default.contains(w))
    {
        default.to_owned()
    } else {
        format!("{default},async_nats=warn")
    };
    let asked = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL"))
        .ok()
        .filter(|s| !s.trim().is_empty());
    match asked {
        Some(spec) => EnvFilter::try_new(spec.to_lowercase()).unwrap_or_else(|e| {
            let _ = writeln!(
                std::io::stderr(),
                "invalid log filter {spec:?} in RUST_LOG or LOG_LEVEL ({e}); using {default:?}"
            );
            EnvFilter::new(&default)
        }),
        None => EnvFilter::new(default),
    }
}

/// Colours only for a person at a terminal that wants them.
fn colour_wanted() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Whether stderr is systemd's journal stream: `JOURNAL_STREAM` is
/// `<device>:<inode>` of it, and a redirected stderr no longer matches.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// A longer value is cut (a datagram must fit the socket's buffer).
const MAX_VALUE: usize = 48 << 10;

/// Field names journald or narun give a meaning to: an event field with
/// one of these names is written as `F_<NAME>`.
const RESERVED: &[&str] = &[
    "MESSAGE",
    "MESSAGE_ID",
    "PRIORITY",
    "CODE_FILE",
    "CODE_LINE",
    "CODE_FUNC",
    "ERRNO",
    "INVOCATION_ID",
    "USER_INVOCATION_ID",
    "SYSLOG_FACILITY",
    "SYSLOG_IDENTIFIER",
    "SYSLOG_PID",
    "SYSLOG_TIMESTAMP",
    "SYSLOG_RAW",
    "DOCUMENTATION",
    "TID",
    "TARGET",
    "UNIT",
    "USER_UNIT",
    "OBJECT_PID",
];

/// Events as journal entries over journald's native protocol
/// (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>).
struct Journald {
    socket: UnixDatagram,
    identifier: String,
}

impl Journald {
    fn connect() -> std::io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(JOURNAL_SOCKET)?;
        // What journald names a line of this program's stdout: under narun
        // node the app's name (its units' `SyslogIdentifier=`), else the
        // program's.
        let identifier = std::env::var("NARUN_APP_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                let argv0 = std::env::args_os().next()?;
                let name = std::path::Path::new(&argv0).file_name()?;
                Some(name.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "narun".into());
        Ok(Journald { socket, identifier })
    }

    fn entry(&self, event: &Event<'_>) -> (Vec<u8>, String) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut text = fields.message;
        text.push_str(&fields.text);
        let mut d = Vec::with_capacity(256 + text.len());
        put(&mut d, "MESSAGE", truncated(&text).as_bytes());
        put(&mut d, "PRIORITY", priority(meta.level()).as_bytes());
        put(&mut d, "SYSLOG_IDENTIFIER", self.identifier.as_bytes());
        put(&mut d, "TARGET", meta.target().as_bytes());
        if let Some(file) = meta.file() {
            put(&mut d, "CODE_FILE", file.as_bytes());
        }
        if let Some(line) = meta.line() {
            put(&mut d, "CODE_LINE", line.to_string().as_bytes());
        }
        for (name, value) in &fields.structured {
            put(&mut d, name, truncated(value).as_bytes());
        }
        (d, text)
    }
}

impl<S: Subscriber> Layer<S> for Journald {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let (datagram, text) = self.entry(event);
        if self.socket.send(&datagram).is_err() {
            // journald gone, or the entry too large: the line on stderr,
            // which systemd also keeps.
            let level = event.metadata().level();
            let _ = writeln!(std::io::stderr(), "{level} {text}");
        }
    }
}

/// journald's priority for a level (syslog's numbers).
fn priority(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "3",
        Level::WARN => "4",
        Level::INFO => "6",
        _ => "7",
    }
}

fn truncated(s: &str) -> &str {
    if s.len() <= MAX_VALUE {
        return s;
    }
    let mut end = MAX_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One field of a native-protocol datagram: `NAME=value\n`, or, for a value
/// with a newline, `NAME\n`, its length (64-bit little endian), the value
/// and `\n`.
fn put(d: &mut Vec<u8>, name: &str, value: &[u8]) {
    d.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        d.push(b'\n');
        d.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        d.push(b'=');
    }
    d.extend_from_slice(value);
    d.push(b'\n');
}

/// A journal field name for an event field: upper case, `[A-Z0-9_]`, not
/// starting with `_` (journald's own) or a digit, at most 64 bytes.
fn field_name(name: &str) -> String {
    let upper: String = name
        .trim_start_matches("r#")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let upper = upper.trim_start_matches('_');
    let mut out = if upper.is_empty()
        || upper.starts_with(|c: char| c.is_ascii_digit())
        || upper.starts_with("NARUN_")
        || RESERVED.contains(&upper)
    {
        format!("F_{upper}")
    } else {
        upper.to_owned()
    };
    out.truncate(64);
    out
}

/// An event's fields: the message, the rest as text (` name=value`, as the
/// text format writes them) and as journal fields.
#[derive(Default)]
struct Fields {
    message: String,
    text: String,
    structured: Vec<(String, String)>,
}

impl Fields {
    fn add(&mut self, field: &Field, text: String, raw: String) {
        if field.name() == "message" {
            self.message = raw;
            return;
        }
        if !self.message.is_empty() || !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(field.name());
        self.text.push('=');
        self.text.push_str(&text);
        self.structured.push((field_name(field.name()), raw));
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, format!("{value:?}"), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        self.add(field, v.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_prints_events_like_its_own_messages() {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || out.clone())
                .with_ansi(false)
                .event_format(CommandLines),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                attempt = 2,
                "cannot look up stream X: waiting for JetStream"
            );
            tracing::error!("gave up");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "narun: warning: cannot look up stream X: waiting for JetStream attempt=2\n\
             narun: error: gave up\n"
        );
    }

    #[test]
    fn field_names_are_journal_names_that_mean_nothing_else() {
        assert_eq!(field_name("error"), "ERROR");
        assert_eq!(field_name("in_flight"), "IN_FLIGHT");
        assert_eq!(field_name("http.status"), "HTTP_STATUS");
        assert_eq!(field_name("_private"), "PRIVATE");
        assert_eq!(field_name("r#type"), "TYPE");
        assert_eq!(field_name("priority"), "F_PRIORITY");
        assert_eq!(field_name("message_id"), "F_MESSAGE_ID");
        assert_eq!(field_name("narun_app"), "F_NARUN_APP");
        assert_eq!(field_name("2fa"), "F_2FA");
        assert_eq!(field_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn values_with_newlines_use_the_binary_form() {
        let mut d = Vec::new();
        put(&mut d, "MESSAGE", b"one line");
        put(&mut d, "ERROR", b"two\nlines");
        let mut want = b"MESSAGE=one line\nERROR\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(d, want);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let s = "é".repeat(MAX_VALUE);
        let t = truncated(&s);
        assert!(t.len() <= MAX_VALUE && t.len() > MAX_VALUE - 2);
        assert!(s.starts_with(t));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), "3");
        assert_eq!(priority(&Level::WARN), "4");
        assert_eq!(priority(&Level::INFO), "6");
        assert_eq!(priority(&Level::DEBUG), "7");
        assert_eq!(priority(&Level::TRACE), "7");
    }

    #[test]
    fn only_nats_connection_events_are_muted() {
        assert!(is_nats_connection_event("narun::nats"));
        assert!(is_nats_connection_event("async_nats"));
        assert!(is_nats_connection_event("async_nats::connector"));
        assert!(!is_nats_connection_event("narun::node::fleet"));
        assert!(!is_nats_connection_event("async_nats_x"));
    }
}

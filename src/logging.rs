//! Log output (tracing) in the Go daemon's format (GO-COMPAT §8, SPEC §10).
//!
//! JSON lines on stderr by default (journald captures them):
//!
//! ```text
//! {"ts":"2026-11-27T06:41:28.123Z","level":"info","node":"node-1","component":"driver","event":"transition","message":"idle -> checking: tick","fields":{"from":"idle","reason":"tick","to":"checking"}}
//! ```
//!
//! * keys in the Go struct order: `ts` (RFC 3339, milliseconds, UTC), `level` (lowercase),
//!   `node` (on every line), `component` (the emitting module, omitted at the crate root),
//!   `event` (the call site's `event = "…"` field, `log` when it has none), `message` (the
//!   call site's message, `""` when it has none), then `fields` with every other field of the
//!   event, keys sorted as Go marshals a map, omitted when empty;
//! * Go's JSON string escaping: `<`, `>`, `&`, U+2028 and U+2029 are written as `\u003c` etc.
//!
//! `log.format: text` gives a human line `ts level event: message key=value…`.
//! `RUST_LOG` overrides the configured level; [`set_level`] changes the configured one at run
//! time (SIGHUP reload). Formatting never panics: a failed write is dropped, a value that cannot
//! be represented in JSON is written as a string.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Registry, reload};

use crate::config::{LogFormat, LogSettings};

/// The crate's own target prefix, stripped from `component`.
const CRATE: &str = "clusterrebootd";

/// A failure that would repeat at every check or heartbeat while it lasts (etcd down): logged
/// once when it starts and once when it ends, not ~1 440 times a day (issue #19).
#[derive(Debug, Default)]
pub struct Streak(AtomicBool);

impl Streak {
    /// No failure yet.
    pub const fn new() -> Self {
        Streak(AtomicBool::new(false))
    }

    /// The call failed: `true` the first time since the last success (log it then).
    pub fn failed(&self) -> bool {
        !self.0.swap(true, Ordering::Relaxed)
    }

    /// The call succeeded: `true` when it had failed before (log the recovery then).
    pub fn succeeded(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// The event name used when a call site sets none.
pub const DEFAULT_EVENT: &str = "log";

/// The reload handle of the installed filter (set by the first successful [`init`]).
static FILTER: OnceLock<reload::Handle<Targets, Registry>> = OnceLock::new();
/// Whether `RUST_LOG` chose the filter (then [`set_level`] leaves it alone).
static ENV_OVERRIDE: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber once; later calls are ignored (tests, repeated commands).
pub fn init(settings: &LogSettings, node: &str) {
    // `RUST_LOG` in the `target=level,…` form (a bare level is the default); one that does
    // not parse is ignored, as the configured level then applies.
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok());
    let (filter, from_env) = match from_env {
        Some(f) => (f, true),
        None => (level_filter(&settings.level), false),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let layer = GoFormatLayer::new(node, settings.format, std::io::stderr);
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    if result.is_ok() {
        ENV_OVERRIDE.store(from_env, Ordering::Relaxed);
        let _ = FILTER.set(handle);
        tracing::debug!(event = "logging_initialised", "logging initialised");
    }
}

/// Changes the level of the installed subscriber (the `log.level` of a reloaded configuration).
///
/// Does nothing before [`init`] or when `RUST_LOG` chose the filter at start (the environment
/// wins, as at start). An invalid level is reported and the current one kept.
pub fn set_level(level: &str) {
    let Some(handle) = FILTER.get() else {
        return;
    };
    if ENV_OVERRIDE.load(Ordering::Relaxed) {
        return;
    }
    match directives(level).parse::<Targets>() {
        Ok(filter) => match handle.reload(filter) {
            Ok(()) => tracing::info!(event = "log_level_changed", level, "log level changed"),
            Err(e) => {
                tracing::warn!(event = "log_level_unchanged", error = %e, "cannot change the log level")
            }
        },
        Err(e) => tracing::warn!(
            event = "log_level_unchanged",
            level,
            error = %e,
            "invalid log level; keeping the current one"
        ),
    }
}

/// The filter for a configured level, `info` when it does not parse (validation rejects that).
fn level_filter(level: &str) -> Targets {
    directives(level)
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
}

/// The etcd client's stack (gRPC, HTTP/2, TLS): at `debug` it writes a dozen lines per round
/// trip (frames, pings, connection pool), which drowns the daemon's own debug lines and cost
/// the hand-off milliseconds of log writes. `log.level` caps it at `info`; `RUST_LOG` (e.g.
/// `RUST_LOG=debug,h2=trace`) still reaches everything.
const CLIENT_STACK: [&str; 7] = [
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "tonic",
    "rustls",
    "tokio_rustls",
];

/// `level` for the daemon, at most `info` for [`CLIENT_STACK`].
fn directives(level: &str) -> String {
    let level = level.trim();
    if matches!(level.to_ascii_lowercase().as_str(), "debug" | "trace") {
        let caps: Vec<String> = CLIENT_STACK.iter().map(|c| format!("{c}=info")).collect();
        format!("{level},{}", caps.join(","))
    } else {
        level.to_string()
    }
}

/// A [`Layer`] writing every event as one line in the Go daemon's format.
pub struct GoFormatLayer<W> {
    node: String,
    format: LogFormat,
    writer: W,
    clock: fn() -> jiff::Timestamp,
}

impl<W> GoFormatLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    /// A layer for `node` writing `format` lines to `writer`, stamped with the system clock.
    pub fn new(node: &str, format: LogFormat, writer: W) -> Self {
        GoFormatLayer {
            node: node.to_owned(),
            format,
            writer,
            clock: jiff::Timestamp::now,
        }
    }

    /// Uses `clock` for `ts` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: fn() -> jiff::Timestamp) -> Self {
        self.clock = clock;
        self
    }
}

impl<S, W> Layer<S> for GoFormatLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut rec = Record::default();
        event.record(&mut rec);
        let meta = event.metadata();
        let line = Line {
            ts: (self.clock)(),
            level: level_name(meta.level()),
            node: &self.node,
            component: rec.component.take().or_else(|| component_of(meta.target())),
            event: rec.event.take().unwrap_or_else(|| DEFAULT_EVENT.to_owned()),
            message: rec.message.take().unwrap_or_default(),
            fields: rec.fields,
        };
        let mut text = match self.format {
            LogFormat::Json => line.json(),
            LogFormat::Text => line.text(),
        };
        text.push('\n');
        // A log line that cannot be written (closed stderr) is lost; never panic over it.
        let _ = self.writer.make_writer().write_all(text.as_bytes());
    }
}

/// The lowercase level name (Go: info, warn, error).
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// `clusterrebootd::coord::etcd` → `coord.etcd`; the crate root has none; other crates keep
/// their whole target (`h2::codec` → `h2.codec`).
fn component_of(target: &str) -> Option<String> {
    let rest = match target.strip_prefix(CRATE) {
        Some("") => return None,
        Some(rest) => match rest.strip_prefix("::") {
            Some(rest) => rest,
            None => target, // another crate whose name starts like ours
        },
        None => target,
    };
    (!rest.is_empty()).then(|| rest.replace("::", "."))
}

/// The fields of one event, split into the Go top-level keys and the rest.
#[derive(Default)]
struct Record {
    event: Option<String>,
    message: Option<String>,
    component: Option<String>,
    fields: BTreeMap<String, Value>,
}

impl Record {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        // `log` crate records carry their origin as `log.*` fields: metadata, not data.
        if name.starts_with("log.") {
            return;
        }
        let as_text = |v: Value| match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        match name {
            "event" => self.event = Some(as_text(value)),
            "component" => self.component = Some(as_text(value)),
            "message" => {
                let text = as_text(value);
                // A call site with both a `message` field and a format string: keep both.
                if let Some(earlier) = self.message.replace(text) {
                    self.fields
                        .insert("detail".to_owned(), Value::String(earlier));
                }
            }
            _ => {
                self.fields.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for Record {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut s = String::new();
        // Writing into a String only fails if the Debug impl itself reports an error.
        let _ = write!(s, "{value:?}");
        self.put(field, Value::String(s));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(value.to_string()));
        self.put(field, v);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

/// One line before encoding.
struct Line<'a> {
    ts: jiff::Timestamp,
    level: &'static str,
    node: &'a str,
    component: Option<String>,
    event: String,
    message: String,
    fields: BTreeMap<String, Value>,
}

impl Line<'_> {
    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T06:41:28.123Z`.
    fn ts(&self) -> String {
        format!("{:.3}", self.ts)
    }

    fn json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"ts\":");
        push_json_str(&mut out, &self.ts());
        out.push_str(",\"level\":");
        push_json_str(&mut out, self.level);
        out.push_str(",\"node\":");
        push_json_str(&mut out, self.node);
        if let Some(c) = &self.component {
            out.push_str(",\"component\":");
            push_json_str(&mut out, c);
        }
        out.push_str(",\"event\":");
        push_json_str(&mut out, &self.event);
        out.push_str(",\"message\":");
        push_json_str(&mut out, &self.message);
        if !self.fields.is_empty() {
            out.push_str(",\"fields\":");
            // A BTreeMap of Values always serialises; keys come out sorted, as Go's maps do.
            let encoded = serde_json::to_string(&self.fields).unwrap_or_else(|_| "{}".into());
            push_go_escaped(&mut out, &encoded);
        }
        out.push('}');
        out
    }

    fn text(&self) -> String {
        let mut out = format!(
            "{} {} {}: {}",
            self.ts(),
            self.level,
            self.event,
            escape_controls(&self.message)
        );
        for (k, v) in &self.fields {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            match v {
                Value::String(s) if plain_word(s) => out.push_str(s),
                Value::String(s) => push_go_escaped(&mut out, &Value::from(s.as_str()).to_string()),
                other => push_go_escaped(&mut out, &other.to_string()),
            }
        }
        out
    }
}

/// Appends `s` as a JSON string literal with Go's escaping.
fn push_json_str(out: &mut String, s: &str) {
    push_go_escaped(out, &Value::from(s).to_string());
}

/// Appends encoded JSON, escaping what Go's encoder escapes and serde_json does not. Those
/// characters can only occur inside string literals, so a plain replacement is exact.
fn push_go_escaped(out: &mut String, json: &str) {
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

/// A text-format value that needs no quoting.
fn plain_word(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=')
}

/// Keeps a text line one line: control characters become escapes.
fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| match c {
            '\n' => "\\n".to_owned(),
            '\r' => "\\r".to_owned(),
            '\t' => "\\t".to_owned(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn debug_caps_the_etcd_client_stack_at_info() {
        assert_eq!(directives("info"), "info");
        assert_eq!(directives("warn"), "warn");
        let d = directives("debug");
        assert!(d.starts_with("debug,"), "{d}");
        for c in CLIENT_STACK {
            assert!(d.contains(&format!("{c}=info")), "{d}");
        }
        assert!(directives("trace").parse::<Targets>().is_ok());
        assert!("debug,h2=info".parse::<Targets>().is_ok());
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for CaptureWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = CaptureWriter;
        fn make_writer(&'a self) -> CaptureWriter {
            CaptureWriter(self.0.clone())
        }
    }

    fn fixed() -> jiff::Timestamp {
        "2026-11-27T06:41:28.123456789Z".parse().expect("ts")
    }

    fn capture(format: LogFormat, f: impl FnOnce()) -> String {
        let cap = Capture::default();
        let layer = GoFormatLayer::new("node-1", format, cap.clone()).with_clock(fixed);
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, f);
        let bytes = cap.0.lock().expect("capture").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn info_with_fields_has_go_keys_in_order() {
        let out = capture(LogFormat::Json, || {
            tracing::info!(
                event = "transition",
                from = "idle",
                to = "checking",
                reason = "tick",
                attempt = 3_u64,
                ok = true,
                "idle -> checking: tick"
            );
        });
        assert_eq!(
            out,
            "{\"ts\":\"2026-11-27T06:41:28.123Z\",\"level\":\"info\",\"node\":\"node-1\",\
             \"component\":\"logging.tests\",\"event\":\"transition\",\
             \"message\":\"idle -> checking: tick\",\
             \"fields\":{\"attempt\":3,\"from\":\"idle\",\"ok\":true,\"reason\":\"tick\",\"to\":\"checking\"}}\n"
                .replace("-> checking", "-\\u003e checking")
        );
    }

    #[test]
    fn warn_without_fields_omits_fields_and_defaults() {
        let out = capture(LogFormat::Json, || {
            tracing::warn!("plain warning");
        });
        assert_eq!(
            out,
            "{\"ts\":\"2026-11-27T06:41:28.123Z\",\"level\":\"warn\",\"node\":\"node-1\",\
             \"component\":\"logging.tests\",\"event\":\"log\",\"message\":\"plain warning\"}\n"
        );
        let v: Value = serde_json::from_str(&out).expect("json");
        assert!(v.get("fields").is_none());
    }

    #[test]
    fn quotes_newlines_and_html_are_escaped() {
        let tricky = "say \"hi\"\nthen <b>&</b>\u{2028}\\";
        let out = capture(LogFormat::Json, || {
            tracing::error!(
                event = "health_check",
                output = tricky,
                code = -1_i64,
                ratio = f64::NAN
            );
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains("\\u003cb\\u003e\\u0026\\u003c/b\\u003e\\u2028"),
            "{out}"
        );
        assert!(out.contains("\"output\":\"say \\\"hi\\\"\\nthen "), "{out}");
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["level"], "error");
        assert_eq!(v["event"], "health_check");
        assert_eq!(v["message"], "");
        assert_eq!(v["fields"]["output"], tricky);
        assert_eq!(v["fields"]["code"], -1);
        assert_eq!(v["fields"]["ratio"], "NaN");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "ts",
            "level",
            "node",
            "component",
            "event",
            "message",
            "fields",
        ];
        // serde_json's Map may sort keys; compare as sets, the exact order is checked above.
        let mut got = keys.clone();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected);
    }

    #[test]
    fn display_and_debug_fields_and_message_field() {
        let err = std::io::Error::other("disk full");
        let out = capture(LogFormat::Json, || {
            tracing::warn!(event = "outcome", error = %err, argv = ?vec!["a", "b"], message = "window denied");
        });
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["message"], "window denied");
        assert_eq!(v["fields"]["error"], "disk full");
        assert_eq!(v["fields"]["argv"], "[\"a\", \"b\"]");
        assert_eq!(v["fields"].as_object().expect("fields").len(), 2);
    }

    #[test]
    fn text_format_is_one_human_line() {
        let out = capture(LogFormat::Text, || {
            tracing::info!(
                event = "transition",
                from = "idle",
                reason = "two words",
                "a\nb"
            );
        });
        assert_eq!(
            out,
            "2026-11-27T06:41:28.123Z info transition: a\\nb from=idle reason=\"two words\"\n"
        );
    }

    #[test]
    fn components() {
        assert_eq!(component_of("clusterrebootd"), None);
        assert_eq!(
            component_of("clusterrebootd::coord::etcd").as_deref(),
            Some("coord.etcd")
        );
        assert_eq!(component_of("h2::codec").as_deref(), Some("h2.codec"));
        assert_eq!(
            component_of("clusterrebootdx").as_deref(),
            Some("clusterrebootdx")
        );
    }

    #[test]
    fn a_streak_says_its_start_and_its_end_once() {
        let s = Streak::new();
        assert!(!s.succeeded(), "no failure to recover from");
        assert!(s.failed(), "the first failure is said");
        assert!(!s.failed() && !s.failed(), "repeats are not");
        assert!(s.succeeded(), "the recovery is said");
        assert!(!s.succeeded());
        assert!(s.failed(), "a new streak is said again");
    }

    #[test]
    fn set_level_before_init_is_harmless() {
        set_level("debug");
        set_level("not a level ===");
    }
}

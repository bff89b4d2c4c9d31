//! Log output (tracing): JSON lines on stderr by default (journald captures them), text for
//! humans with `log.format: text`. `RUST_LOG` overrides the configured level.

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber once; later calls are ignored (tests, repeated commands).
pub fn init(settings: &LogSettings, node: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(settings.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if result.is_ok() {
        tracing::debug!(node, "logging initialised");
    }
}

/// Changes the log level after a reload (placeholder until the reloadable filter lands: the
/// level takes effect at the next start).
pub fn set_level(level: &str) {
    tracing::debug!(level, "log level change requested");
}

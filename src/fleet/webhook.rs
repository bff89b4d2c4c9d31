//! Webhook notifications (issue #17, SPEC §15): `reboot_started`, `node_back`,
//! `rollout_stuck` (a node in `Locking` or `Recovering` longer than `stuck_after_sec`, or held
//! by another node's in-progress marker that has no slot), sent by the node concerned as an
//! observer of its own transitions; `pause` and `resume`, sent by the `cluster` command that
//! made them.
//!
//! Bodies are plain JSON or Slack-compatible (`{"text": …}`). Each delivery runs in a task of
//! its own with a timeout per attempt and retries with backoff, so a receiver that hangs never
//! delays a decision or another notification; a failed delivery is a log line and
//! `webhooks_total{result="failed"}`. `http://` and `https://` (rustls with ring, the TLS
//! stack etcd-client already uses; server certificates verified against the system bundle or
//! `webhooks.ca_file`). The client is a minimal HTTP/1.1 POST (`Connection: close`, the status
//! line read, at most 1 KiB of the answer), which is all a webhook needs.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::NodeState;
use crate::config::Webhooks;
use crate::fsm::{StateName, Step};
use crate::metrics::Metrics;

/// Schema version of the JSON body.
pub const BODY_VERSION: u32 = 1;
/// Longest pause between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Most deliveries in flight; more are dropped (and counted as failed) rather than piling up
/// behind a receiver that hangs.
const MAX_IN_FLIGHT: usize = 64;

/// Where the CA certificates for `https://` webhooks come from without `webhooks.ca_file`.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Largest CA file read.
const MAX_CA_BYTES: u64 = 4 * 1024 * 1024;

pub use crate::config::webhook_url::{Format, HttpUrl, Target, parse_url};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The node took the slot onto its reboot lease and is about to reboot.
    RebootStarted,
    /// The node is back and its post-reboot health check passed.
    NodeBack,
    /// The rollout does not progress (see the module doc).
    RolloutStuck,
    /// `cluster pause`.
    Pause,
    /// `cluster resume`.
    Resume,
}

/// One notification (the JSON body; `summary` is also the Slack text).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// [`BODY_VERSION`].
    pub version: u32,
    /// What happened.
    pub event: Kind,
    /// The node concerned (for pause/resume: the node the command ran on).
    pub node: String,
    /// When (RFC 3339).
    pub at: String,
    /// The node's FSM state then, when known.
    pub state: Option<String>,
    /// One line for humans.
    pub summary: String,
    /// Event-specific facts (reason, down time, pause reason and author, …).
    pub detail: serde_json::Value,
}

impl Notification {
    /// A notification stamped now.
    pub fn new(
        event: Kind,
        node: &str,
        state: Option<&str>,
        summary: String,
        detail: serde_json::Value,
    ) -> Self {
        Notification {
            version: BODY_VERSION,
            event,
            node: node.to_string(),
            at: jiff::Timestamp::now().to_string(),
            state: state.map(str::to_string),
            summary,
            detail,
        }
    }
}

/// Slack's three escapes, so text from etcd (a pause reason) cannot `@channel` everyone.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The request body for `format`.
pub fn body(format: Format, n: &Notification) -> Vec<u8> {
    let v = match format {
        Format::Json => serde_json::to_value(n).unwrap_or_default(),
        Format::Slack => {
            serde_json::json!({"text": format!("[clusterrebootd] {}", slack_escape(&n.summary))})
        }
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The TLS client for `https://` webhooks: roots from `ca_file` (PEM), or the system bundle.
pub fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use std::io::Read;
    let path = ca_file.unwrap_or(std::path::Path::new(SYSTEM_CA_BUNDLE));
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_BYTES).read_to_end(&mut pem))
        .map_err(|e| {
            format!(
                "CA certificates {}: {e} (set webhooks.ca_file)",
                path.display()
            )
        })?;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("CA certificates {}: {e}", path.display()))?;
        // A bundle may hold certificates this verifier cannot use; skip those.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!(
            "CA certificates {}: no usable certificate",
            path.display()
        ));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Writes the request on `s` and reads the status code of the answer.
async fn exchange<S>(s: &mut S, url: &HttpUrl, body: &[u8]) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let host = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: clusterrebootd/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.path,
        crate::version::VERSION,
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    s.write_all(body).await.map_err(|e| format!("send: {e}"))?;
    s.flush().await.map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !answer.contains(&b'\n') && answer.len() < 1024 {
        let n = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    line.lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                crate::text::cap(line.lines().next().unwrap_or("").to_string(), 80)
            )
        })
}

/// One POST; `Ok(status)` for any HTTP answer, `Err` for no answer. Bounded by `timeout`.
/// `tls` is needed for `https://` URLs (see [`tls_connector`]).
pub async fn post(
    url: &HttpUrl,
    body: &[u8],
    timeout: Duration,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<u16, String> {
    let attempt = async {
        let mut tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if !url.tls {
            return exchange(&mut tcp, url, body).await;
        }
        let tls = tls.ok_or_else(|| "no TLS configuration for an https:// URL".to_string())?;
        let name = rustls_pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("server name {:?}: {e}", url.host))?;
        let mut s = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(&mut s, url, body).await
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs_f64())))
}

/// Sends `n` to `target`, retrying (1 s, 2 s, 4 s … at most 30 s apart) until a 2xx answer or
/// `retries` further attempts failed. Returns the last error.
pub async fn deliver(target: &Target, n: &Notification, cfg: &Webhooks) -> Result<(), String> {
    let (timeout, retries) = (cfg.timeout, cfg.retries);
    let body = body(target.format, n);
    let tls = if target.url.tls {
        Some(tls_connector(cfg.ca_file.as_deref()).map_err(|e| format!("not sent: {e}"))?)
    } else {
        None
    };
    let mut delay = Duration::from_secs(1);
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
        match post(&target.url, &body, timeout, tls.as_ref()).await {
            Ok(s) if (200..300).contains(&s) => return Ok(()),
            Ok(s) => last = format!("HTTP {s}"),
            Err(e) => last = e,
        }
    }
    Err(format!("{} attempts failed, the last: {last}", retries + 1))
}

/// Delivers `n` to every target in tasks of their own; results go to the metric and the log.
pub fn send_all(
    cfg: &Webhooks,
    n: Notification,
    metrics: Option<Arc<Metrics>>,
    in_flight: &Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    for target in cfg.targets.clone() {
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            if let Some(m) = &metrics {
                m.webhook("failed");
            }
            tracing::warn!(event = "webhook_failed", url = %target.url.text, notification = ?n.event, "too many webhook deliveries pending (a receiver hangs?); dropped this one");
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (n, metrics, cfg) = (n.clone(), metrics.clone(), cfg.clone());
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let result = deliver(&target, &n, &cfg).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    if let Some(m) = &metrics {
                        m.webhook("sent");
                    }
                    tracing::info!(event = "webhook_sent", url = %target.url.text, notification = ?n.event);
                }
                Err(e) => {
                    if let Some(m) = &metrics {
                        m.webhook("failed");
                    }
                    tracing::warn!(event = "webhook_failed", url = %target.url.text, notification = ?n.event, error = %e, "webhook not delivered (decisions are not affected)");
                }
            }
        });
    }
}

/// Delivers `n` to every target at once and waits for all (the `cluster` commands): returns
/// `(url, result)` per target.
pub async fn deliver_all(cfg: &Webhooks, n: &Notification) -> Vec<(String, Result<(), String>)> {
    let mut set = tokio::task::JoinSet::new();
    for target in cfg.targets.clone() {
        let (n, cfg) = (n.clone(), cfg.clone());
        set.spawn(async move {
            let r = deliver(&target, &n, &cfg).await;
            (target.url.text, r)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(r) => out.push(r),
            Err(e) => out.push((String::new(), Err(format!("delivery task failed: {e}")))),
        }
    }
    out
}

/// What the observer task hears from the driver's steps.
#[derive(Debug)]
struct Seen {
    to: StateName,
    changed_state: bool,
    reason: String,
    notify: Option<Notification>,
}

/// The observer of this node's steps: turns them into notifications and watches for a stay
/// in `Locking`/`Recovering` longer than `stuck_after`.
#[derive(Debug)]
pub struct Observer {
    node: String,
    tx: mpsc::UnboundedSender<Seen>,
    stuck_marker: Option<String>,
}

impl Observer {
    /// Starts the observer task (nothing is started without targets: `None`).
    pub fn start(node: &str, cfg: &Webhooks, metrics: Arc<Metrics>) -> Option<Self> {
        if cfg.targets.is_empty() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(node.to_string(), cfg.clone(), metrics, rx));
        Some(Observer {
            node: node.to_string(),
            tx,
            stuck_marker: None,
        })
    }

    /// After a step; `record` is the newly published record, when it changed.
    pub fn observe(&mut self, step: &Step, record: Option<&NodeState>) {
        let node = self.node.as_str();
        let mut notify = None;
        if step.to == StateName::Rebooting && step.from != StateName::Rebooting {
            notify = Some(Notification::new(
                Kind::RebootStarted,
                node,
                Some(step.to.as_str()),
                format!("{node} is rebooting: {}", step.reason),
                serde_json::json!({"reason": step.reason}),
            ));
        } else if step.from == StateName::Recovering && step.to == StateName::Idle {
            let last = record.and_then(|r| r.last_reboot.clone());
            let down = last
                .as_ref()
                .and_then(|l| l.down_seconds)
                .map(|d| format!(" (down {})", super::table::short_age(d as i64)))
                .unwrap_or_default();
            notify = Some(Notification::new(
                Kind::NodeBack,
                node,
                Some(step.to.as_str()),
                format!("{node} is back and healthy after its reboot{down}"),
                serde_json::json!({"reason": step.reason, "last_reboot": last}),
            ));
        } else if let Some(w) = record.and_then(|r| r.waiting_for.as_ref())
            && w.detail.contains(" without a slot")
        {
            if self.stuck_marker.as_deref() != Some(w.detail.as_str()) {
                self.stuck_marker = Some(w.detail.clone());
                notify = Some(Notification::new(
                    Kind::RolloutStuck,
                    node,
                    record.map(|r| r.state.as_str()),
                    format!("rollout stuck: {node} waits: {}", w.detail),
                    serde_json::json!({"reason": w.detail, "unblock": w.unblock, "cause": "marker_without_slot"}),
                ));
            }
        } else if record.is_some() {
            self.stuck_marker = None;
        }
        let _ = self.tx.send(Seen {
            to: step.to,
            changed_state: step.from != step.to,
            reason: step.reason.clone(),
            notify,
        });
    }
}

async fn run(
    node: String,
    cfg: Webhooks,
    metrics: Arc<Metrics>,
    mut rx: mpsc::UnboundedReceiver<Seen>,
) {
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut state = StateName::Idle;
    let mut reason = String::new();
    let mut entered = tokio::time::Instant::now();
    let mut reported = false;
    loop {
        let watching = matches!(state, StateName::Locking | StateName::Recovering) && !reported;
        let deadline = entered + cfg.stuck_after;
        tokio::select! {
            seen = rx.recv() => {
                let Some(seen) = seen else { return };
                if seen.changed_state {
                    state = seen.to;
                    entered = tokio::time::Instant::now();
                    reported = false;
                }
                reason = seen.reason;
                if let Some(n) = seen.notify {
                    send_all(&cfg, n, Some(metrics.clone()), &in_flight);
                }
            }
            () = tokio::time::sleep_until(deadline), if watching => {
                reported = true;
                let stayed = super::table::short_age(cfg.stuck_after.as_secs() as i64);
                send_all(&cfg, Notification::new(
                    Kind::RolloutStuck,
                    &node,
                    Some(state.as_str()),
                    format!("rollout stuck: {node} has been in {} for more than {stayed}: {reason}", state.as_str()),
                    serde_json::json!({"reason": reason, "cause": "too_long_in_state", "stuck_after_sec": cfg.stuck_after.as_secs()}),
                ), Some(metrics.clone()), &in_flight);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_in_plain_words() {
        let u = parse_url("http://hooks.example:8080/services/T0/B0?x=1").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("hooks.example", 8080, "/services/T0/B0?x=1")
        );
        let u = parse_url("https://hooks.slack.com/services/T/B/X").expect("https");
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.port), ("hooks.slack.com", 443));
        let u = parse_url("http://[::1]/hook").expect("v6");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 80, "/hook")
        );
        assert_eq!(parse_url("http://h").expect("bare").path, "/");
        for (bad, why) in [
            ("ftp://x/", "must start with http:// or https://"),
            ("http://u:p@h/", "user:password@"),
            ("http://h:0/", "port must be"),
            ("http://h:99999/", "port must be"),
            ("http:///x", "no host"),
            ("http://h/a b", "spaces"),
        ] {
            let e = parse_url(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn slack_bodies_escape_mentions_and_json_bodies_carry_everything() {
        let n = Notification::new(
            Kind::Pause,
            "n1",
            None,
            "paused: <!channel> & co".into(),
            serde_json::json!({"reason": "<!channel>"}),
        );
        let slack: serde_json::Value =
            serde_json::from_slice(&body(Format::Slack, &n)).expect("json");
        assert_eq!(
            slack,
            serde_json::json!({"text": "[clusterrebootd] paused: &lt;!channel&gt; &amp; co"})
        );
        let plain: serde_json::Value =
            serde_json::from_slice(&body(Format::Json, &n)).expect("json");
        assert_eq!(plain["event"], "pause");
        assert_eq!(plain["version"], 1);
        assert_eq!(plain["detail"]["reason"], "<!channel>");
    }
}

//! The `node_state` record (SPEC §7, issue #17): one node's decision state for the fleet view,
//! as stored in `<ns>/node_state/<node>`. A coordination record like the health record: the
//! type and its untrusted decoding live here, below everything that writes or reads it
//! (`fleet` derives and publishes it, `cluster status` and the page read it back).

use serde::{Deserialize, Serialize};

/// The schema version this build writes (`version` field of [`NodeState`]).
pub const SCHEMA_VERSION: u32 = 1;

/// Largest `node_state` value read back; a bigger one is shown as an error, not decoded.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// Longest piece of free text kept from a record read back (reasons, details).
pub const MAX_TEXT: usize = 1024;
/// Longest short field kept (node, state, gate, timestamps, version, detector names).
const MAX_WORD: usize = 256;
/// Most detector names kept.
const MAX_DETECTORS: usize = 32;

/// One node's decision state, as published in `<ns>/node_state/<node>` (JSON; the schema is in
/// docs/OPERATIONS.md). Equal records are never written twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// Schema version ([`SCHEMA_VERSION`]); readers show records of other versions with a note.
    pub version: u32,
    /// Node name.
    pub node: String,
    /// FSM state (`Idle`, `Locking`, `Rebooting`, …). The check states of a pass (`Detecting`,
    /// `WindowCheck`, `HealthPre`) are not published: a pass normally lasts well under a
    /// second, and publishing them would mean two writes per check on every node.
    pub state: String,
    /// When the node entered this state, or when what it waits for last changed (RFC 3339).
    pub since: String,
    /// The machine's last reason line outside `Idle` (e.g. "waiting for the shutdown").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the last detector run said a reboot is required; `null` when unknown (no
    /// detector run since the daemon started, or the detectors failed).
    pub reboot_required: Option<bool>,
    /// The detectors that said so (`reboot-request` for `cluster request-reboot`).
    #[serde(default)]
    pub required_by: Vec<String>,
    /// What keeps the node from going on, when something does.
    pub waiting_for: Option<Waiting>,
    /// 1-based position in the slot queue while waiting in `Locking`.
    pub queue_position: Option<u32>,
    /// When the node checks again by itself, while it waits for something (RFC 3339).
    pub next_check_at: Option<String>,
    /// The last reboot of this node (from `<run_dir>/last-reboot.json`).
    pub last_reboot: Option<LastReboot>,
    /// The daemon's version.
    pub daemon_version: String,
    /// Whether reboots are only logged.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a node waits for: the gate (the `status --explain` names: `window`, `slot`,
/// `cooldown`, `health_script`, `cluster_policy`, `kill_switch`, `pause`, `detector_error`,
/// `post_reboot_health`, `etcd_unavailable`) and the reason in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// Which gate.
    pub gate: String,
    /// The reason in plain words.
    pub detail: String,
    /// What would unblock it (the `status --explain` sentence).
    #[serde(default)]
    pub unblock: String,
}

/// The last reboot: when the command was issued, how long the node was down, when it had
/// recovered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastReboot {
    /// When the reboot command was issued (or, when unknown, when the node was back; RFC 3339).
    pub at: String,
    /// Seconds from the command to the node being back, when known.
    pub down_seconds: Option<f64>,
    /// When the post-reboot health check passed (RFC 3339), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<String>,
}

impl NodeState {
    /// The JSON written to etcd.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Decodes a `node_state` value read back from etcd (untrusted): size-capped, every text field
/// capped, the node name taken from the key when the record names another. Errors say what is
/// wrong in one line, with the first bytes of the value.
pub fn decode(node_from_key: &str, value: &[u8]) -> Result<NodeState, String> {
    if value.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "record too large ({} bytes, at most {MAX_RECORD_BYTES} are read)",
            value.len()
        ));
    }
    let mut r: NodeState = serde_json::from_slice(value).map_err(|e| {
        format!(
            "not a node_state record ({e}): {}",
            crate::text::cap_bytes(value, 80)
        )
    })?;
    let word = |s: String| crate::text::cap(s, MAX_WORD);
    let text = |s: String| crate::text::cap(s, MAX_TEXT);
    r.node = word(std::mem::take(&mut r.node));
    if r.node != node_from_key {
        r.node = node_from_key.to_string();
    }
    r.state = word(std::mem::take(&mut r.state));
    r.since = word(std::mem::take(&mut r.since));
    r.reason = r.reason.map(text);
    r.required_by.truncate(MAX_DETECTORS);
    r.required_by = r.required_by.into_iter().map(word).collect();
    r.waiting_for = r.waiting_for.map(|w| Waiting {
        gate: word(w.gate),
        detail: text(w.detail),
        unblock: text(w.unblock),
    });
    r.next_check_at = r.next_check_at.map(word);
    r.last_reboot = r.last_reboot.map(|l| LastReboot {
        at: word(l.at),
        down_seconds: l.down_seconds.filter(|d| d.is_finite()),
        recovered_at: l.recovered_at.map(word),
    });
    r.daemon_version = word(std::mem::take(&mut r.daemon_version));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeState {
        NodeState {
            version: SCHEMA_VERSION,
            node: "n1".into(),
            state: "Locking".into(),
            since: "2026-01-01T00:00:00Z".into(),
            reason: Some("still waiting for a slot".into()),
            reboot_required: Some(true),
            required_by: vec!["reboot-required-file".into()],
            waiting_for: Some(Waiting {
                gate: "slot".into(),
                detail: "n2 holds the slot".into(),
                unblock: "wait".into(),
            }),
            queue_position: Some(2),
            next_check_at: None,
            last_reboot: None,
            daemon_version: "1.0.0".into(),
            dry_run: false,
        }
    }

    #[test]
    fn round_trips_and_takes_the_node_from_the_key() {
        let r = sample();
        let bytes = r.to_bytes().expect("encode");
        assert_eq!(decode("n1", &bytes), Ok(r.clone()));
        assert_eq!(decode("other", &bytes).expect("decode").node, "other");
    }

    #[test]
    fn hostile_values_are_errors_or_capped_never_panics() {
        let e = decode("n1", &vec![b'x'; MAX_RECORD_BYTES + 1]).expect_err("too large");
        assert!(e.starts_with("record too large"), "{e}");
        let e = decode("n1", b"{\"version\":1,\xff").expect_err("garbage");
        assert!(e.starts_with("not a node_state record"), "{e}");
        let mut r = sample();
        r.reason = Some("x".repeat(10_000));
        let bytes = r.to_bytes().expect("encode");
        let d = decode("n1", &bytes).expect("a 10 KB reason fits the record cap");
        let reason = d.reason.expect("reason");
        assert!(reason.len() < MAX_TEXT + 64, "{}", reason.len());
        assert!(
            reason.ends_with("[truncated: 10000 bytes in all]"),
            "{reason}"
        );
    }
}

//! `fsm-spec/machine.yaml`: the machine-readable description of the machine (states, events,
//! effects, transitions, invariants), compiled into the binary.
//!
//! The file is the reviewable truth: `tests/model/fsm_spec.rs` drives the real machine through every
//! state × event pair and fails if code and table disagree in either direction.
//! `clusterrebootd fsm --format mermaid|dot|json` renders it.

use serde::{Deserialize, Serialize};

/// The spec text as shipped.
pub const SPEC_YAML: &str = include_str!("../fsm-spec/machine.yaml");

/// The whole specification.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// States with their superstate and meaning.
    pub states: Vec<Named>,
    /// Superstates and what their exit action does.
    pub superstates: Vec<Named>,
    /// Event names with their meaning.
    pub events: Vec<Named>,
    /// Effect names with their meaning.
    pub effects: Vec<Named>,
    /// Transition rows; the first row matching a (state, position, event, guard) applies.
    pub transitions: Vec<Row>,
    /// Named invariants of SPEC §2.2, checked by `proptests/`.
    pub invariants: Vec<Invariant>,
}

/// A documented name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    /// The name (as in the code).
    pub name: String,
    /// Parent superstate, for states and superstates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superstate: Option<String>,
    /// What it means.
    pub doc: String,
}

/// One transition row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Source state(s).
    pub from: OneOrMany,
    /// Position inside the state (sub-step or configuration), when the row is that specific.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<OneOrMany>,
    /// Event name(s).
    pub event: OneOrMany,
    /// Named guard (the event's variant or data condition), `*` for any.
    pub guard: OneOrMany,
    /// Target state; `=` means the state does not change.
    pub to: String,
    /// Effect names in emission order.
    #[serde(default)]
    pub effects: Vec<String>,
    /// Go outcome when the row ends a pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// A YAML scalar or list of names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One name.
    One(String),
    /// Several names.
    Many(Vec<String>),
}

impl OneOrMany {
    /// Whether `name` is listed (`*` matches everything).
    pub fn matches(&self, name: &str) -> bool {
        match self {
            OneOrMany::One(s) => s == "*" || s == name,
            OneOrMany::Many(v) => v.iter().any(|s| s == "*" || s == name),
        }
    }

    /// The listed names.
    pub fn names(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// A named invariant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invariant {
    /// Stable identifier (used by the property tests' messages).
    pub id: String,
    /// The rule.
    pub text: String,
}

impl Spec {
    /// Parses the shipped spec.
    pub fn load() -> Result<Spec, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(SPEC_YAML)
    }

    /// The first row that applies, with its index.
    pub fn lookup(&self, state: &str, at: &str, event: &str, guard: &str) -> Option<(usize, &Row)> {
        self.transitions.iter().enumerate().find(|(_, r)| {
            r.from.matches(state)
                && r.at.as_ref().is_none_or(|a| a.matches(at))
                && r.event.matches(event)
                && r.guard.matches(guard)
        })
    }

    /// Edges between different states, in spec order. The label names the events; when a
    /// single event causes the edge, its guards too (`Event [guard|guard]`).
    fn edges(&self) -> Vec<(String, String, String)> {
        // (from, to, [(event, guards)])
        type Edge = (String, String, Vec<(String, Vec<String>)>);
        let mut out: Vec<Edge> = Vec::new();
        for r in &self.transitions {
            for from in r.from.names() {
                if from == "*" || from == r.to || r.to == "=" {
                    continue;
                }
                let idx = match out.iter().position(|(f, t, _)| f == from && *t == r.to) {
                    Some(i) => i,
                    None => {
                        out.push((from.to_string(), r.to.clone(), Vec::new()));
                        out.len() - 1
                    }
                };
                for ev in r.event.names() {
                    let events = &mut out[idx].2;
                    let guards: Vec<String> =
                        r.guard.names().iter().map(|g| g.to_string()).collect();
                    match events.iter_mut().find(|(e, _)| e == ev) {
                        Some((_, gs)) => {
                            for g in guards {
                                if !gs.contains(&g) {
                                    gs.push(g);
                                }
                            }
                        }
                        None => events.push((ev.to_string(), guards)),
                    }
                }
            }
        }
        out.into_iter()
            .map(|(f, t, events)| {
                let label = match &events[..] {
                    [(ev, guards)] if !guards.iter().any(|g| g == "*") => {
                        format!("{ev} [{}]", guards.join("|"))
                    }
                    _ => events
                        .iter()
                        .map(|(e, _)| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                (f, t, label)
            })
            .collect()
    }

    /// Mermaid `stateDiagram-v2` text.
    pub fn to_mermaid(&self) -> String {
        let mut s = String::from("stateDiagram-v2\n    [*] --> Idle\n");
        let slot: Vec<&str> = self
            .states
            .iter()
            .filter(|st| st.superstate.as_deref() == Some("slot"))
            .map(|st| st.name.as_str())
            .collect();
        if !slot.is_empty() {
            s.push_str("    state \"slot (released on every exit but the hand-over to Rebooting)\" as slot {\n");
            for st in &slot {
                s.push_str(&format!("        {st}\n"));
            }
            s.push_str("    }\n");
        }
        for (f, t, label) in self.edges() {
            s.push_str(&format!("    {f} --> {t}: {}\n", label.replace(':', " ")));
        }
        s
    }

    /// Graphviz DOT text.
    pub fn to_dot(&self) -> String {
        let mut s = String::from(
            "digraph clusterrebootd {\n    rankdir=LR;\n    node [shape=box, style=rounded];\n",
        );
        s.push_str("    subgraph cluster_slot {\n        label=\"slot\";\n");
        for st in self
            .states
            .iter()
            .filter(|st| st.superstate.as_deref() == Some("slot"))
        {
            s.push_str(&format!("        {};\n", st.name));
        }
        s.push_str("    }\n");
        for (f, t, label) in self.edges() {
            s.push_str(&format!(
                "    {f} -> {t} [label=\"{}\"];\n",
                label.replace('"', "'")
            ));
        }
        s.push_str("}\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_spec_parses_and_names_match_the_code() {
        let spec = Spec::load().expect("fsm-spec/machine.yaml parses");
        let states: Vec<&str> = spec.states.iter().map(|s| s.name.as_str()).collect();
        let code: Vec<&str> = crate::fsm::StateName::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(states, code, "states in spec vs code");
        let events: Vec<&str> = spec.events.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(events, crate::fsm::Event::names(), "events in spec vs code");
        let effects: Vec<&str> = spec.effects.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            effects,
            crate::fsm::Effect::NAMES,
            "effects in spec vs code"
        );
        for r in &spec.transitions {
            for n in r.effects.iter() {
                assert!(
                    spec.effects.iter().any(|e| &e.name == n),
                    "unknown effect {n} in {r:?}"
                );
            }
            assert!(
                r.to == "=" || states.contains(&r.to.as_str()),
                "unknown target {} in {r:?}",
                r.to
            );
        }
    }

    #[test]
    fn mermaid_has_the_lifecycle_edges() {
        let spec = Spec::load().expect("spec");
        let m = spec.to_mermaid();
        assert!(m.starts_with("stateDiagram-v2\n"));
        for edge in [
            "Idle --> Detecting",
            "Cooldown --> Rebooting",
            "Rebooting --> Recovering",
            "Recovering --> Idle",
        ] {
            assert!(m.contains(edge), "missing {edge} in\n{m}");
        }
    }
}

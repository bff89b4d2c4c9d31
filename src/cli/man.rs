//! `man`: prints the roff man page (section 8) of the whole command line on stdout.

use std::io::Write;

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, roman};

use crate::exit::Exit;

/// The string definitions the roff crate puts before every piece it renders (apostrophes).
const APOSTROPHE_PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

type Section<'a> = &'a dyn Fn(&mut Vec<u8>) -> std::io::Result<()>;

/// Renders one section without the apostrophe preamble.
fn section(render: Section<'_>) -> std::io::Result<String> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .strip_prefix(APOSTROPHE_PREAMBLE)
        .unwrap_or(&text)
        .to_owned())
}

/// Sections written by hand (issue #19: the page must stand alone): (title, paragraphs), each
/// paragraph either plain text or a `(tag, text)` item.
const HAND_SECTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "CONFIGURATION",
        &[(
            "",
            "One YAML file, by default /etc/clusterrebootd/config.yaml (--config PATH), merged with config.d/*.yaml beside it in lexical order. The Go daemon's configuration loads unchanged. Check it with clusterrebootd validate-config, which prints every problem with its field path (exit 2). Every field, its default and whether a reload applies it: /usr/share/doc/clusterrebootd/CONFIG.md.",
        )],
    ),
    (
        "FILES",
        &[
            (
                "/etc/clusterrebootd/config.yaml",
                "the configuration (and config.d/*.yaml beside it)",
            ),
            (
                "/etc/clusterrebootd/disable",
                "the default kill switch file (kill_switch_file): while it exists, no reboot starts",
            ),
            (
                "/var/lib/clusterrebootd/journal.jsonl",
                "the decision journal (state_dir): every input and decision, replayed after a restart; status --explain and simulate --trace read it",
            ),
            (
                "/var/lib/clusterrebootd/reboot-lease.json, etcd-identity.json",
                "what survives the reboot: the slot's reboot lease, the pinned etcd store",
            ),
            (
                "/run/clusterrebootd/state.json, last-reboot.json",
                "what the running daemon is doing now (run_dir), rewritten on every transition; its last reboot",
            ),
            (
                "/usr/share/doc/clusterrebootd/",
                "OPERATIONS.md, CONFIG.md, MIGRATION.md, RUNBOOKS.md, examples/ (health scripts, hooks)",
            ),
        ],
    ),
    (
        "SIGNALS",
        &[
            (
                "SIGTERM, SIGINT",
                "stop: a queue entry or slot is given back, except during a reboot, where the slot is kept through the reboot and released after the post-reboot health check",
            ),
            (
                "SIGHUP",
                "reload the configuration (systemctl reload clusterrebootd); fields that need a restart are named in a warning, an invalid file is refused and the running configuration kept",
            ),
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            (
                "",
                "Health scripts, detector commands, hooks and the reboot command get the RC_* variables:",
            ),
            (
                "RC_NODE_NAME, RC_DRY_RUN",
                "the node name; true in a dry run",
            ),
            (
                "RC_PHASE",
                "pre-lock, post-lock, heartbeat, post-reboot, or monitor (run --once and status with no reboot required)",
            ),
            (
                "RC_LOCK_ENABLED, RC_LOCK_HELD, RC_LOCK_ATTEMPTS",
                "whether a lock backend is used, whether this node holds a slot, how many attempts it took",
            ),
            (
                "RC_LOCK_KEY, RC_ETCD_ENDPOINTS, RC_KILL_SWITCH_FILE, RC_MAX_CONCURRENT_REBOOTS",
                "the coordination settings",
            ),
            (
                "RC_CLUSTER_MIN_HEALTHY_FRACTION, RC_CLUSTER_MIN_HEALTHY_ABSOLUTE, RC_CLUSTER_FORBID_IF_ONLY_FALLBACK_LEFT, RC_CLUSTER_FALLBACK_NODES",
                "the cluster policies",
            ),
            (
                "RC_WINDOWS_ALLOW, RC_WINDOWS_DENY, RC_METRICS_ENDPOINT, RC_SKIP_HEALTH, RC_SKIP_LOCK",
                "the windows, the metrics address, the status --skip-* flags",
            ),
            ("RUST_LOG", "a tracing filter that overrides log.level"),
            (
                "NOTIFY_SOCKET, WATCHDOG_USEC",
                "set by systemd (Type=notify): READY=1, STATUS= and watchdog pings",
            ),
        ],
    ),
    (
        "EXAMPLES",
        &[
            (
                "clusterrebootd validate-config",
                "check /etc/clusterrebootd/config.yaml and config.d/",
            ),
            (
                "clusterrebootd status --explain",
                "why is this node not rebooting: the blocking gate, its evidence, what would unblock it",
            ),
            (
                "clusterrebootd cluster status",
                "every node's state and what it waits for, the slot holders and the queue",
            ),
            (
                "clusterrebootd cluster pause --reason 'change freeze'",
                "stop every reboot in the fleet until clusterrebootd cluster resume",
            ),
            (
                "clusterrebootd simulate --cluster 40 --concurrency 2",
                "plan a rollout of 40 nodes under this configuration's windows and cooldown",
            ),
            (
                "clusterrebootd windows --at 2026-12-08T23:00:00+01:00",
                "would a reboot be allowed then, and when next",
            ),
        ],
    ),
];

/// COMMANDS: every subcommand (and `cluster`'s) with what it does and its options, in this
/// page, instead of clap's list of sub-pages that are not installed.
fn commands() -> Roff {
    let mut r = Roff::default();
    r.control("SH", ["COMMANDS"]);
    let cmd = super::Cli::command();
    let mut entries = Vec::new();
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        if sub.has_subcommands() {
            for inner in sub.get_subcommands().filter(|c| c.get_name() != "help") {
                entries.push((
                    format!("{} {}", sub.get_name(), inner.get_name()),
                    inner.clone(),
                ));
            }
        } else {
            entries.push((sub.get_name().to_string(), sub.clone()));
        }
    }
    for (name, c) in entries {
        let mut head = vec![bold(name)];
        for a in c.get_arguments().filter(|a| !a.is_hide_set()) {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let text = match a.get_long() {
                Some(l) if a.get_action().takes_values() => {
                    format!(" [--{l} {}]", id.to_uppercase())
                }
                Some(l) => format!(" [--{l}]"),
                None => format!(" {}", id.to_uppercase()),
            };
            head.push(roman(text));
        }
        r.control("TP", []);
        r.text(head);
        r.text([roman(
            c.get_about().map(|s| s.to_string()).unwrap_or_default(),
        )]);
    }
    r
}

/// The hand-written sections as roff.
fn hand_sections() -> Roff {
    let mut r = Roff::default();
    for (title, paragraphs) in HAND_SECTIONS {
        r.control("SH", [*title]);
        for (tag, text) in *paragraphs {
            if tag.is_empty() {
                r.control("PP", []);
            } else {
                r.control("TP", []);
                r.text([bold(*tag)]);
            }
            r.text([roman(*text)]);
        }
    }
    r
}

/// The man page: `.TH` first, clap's sections, the commands, the hand-written sections, then
/// EXIT STATUS from the exit-code contract.
pub fn page() -> std::io::Result<Vec<u8>> {
    let cmd = super::Cli::command();
    let man = clap_mangen::Man::new(cmd).section("8");
    let commands = commands();
    let hand = hand_sections();
    let mut exit = Roff::default();
    exit.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in super::EXIT_CODES {
        exit.control("TP", []);
        exit.text([bold(code.to_string())]);
        exit.text([roman(meaning)]);
    }
    let mut out = section(&|w| man.render_title(w))?;
    out.push_str(APOSTROPHE_PREAMBLE);
    let sections: [Section<'_>; 8] = [
        &|w| man.render_name_section(w),
        &|w| man.render_synopsis_section(w),
        &|w| man.render_description_section(w),
        &|w| man.render_options_section(w),
        &|w| commands.to_writer(w),
        &|w| hand.to_writer(w),
        &|w| exit.to_writer(w),
        &|w| man.render_version_section(w),
    ];
    for render in sections {
        out.push_str(&section(render)?);
    }
    Ok(out.into_bytes())
}

/// Prints the man page on stdout.
pub fn run() -> Exit {
    let written = page().and_then(|p| {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&p)?;
        stdout.flush()
    });
    match written {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("clusterrebootd man: {e}");
            Exit::Runtime
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_is_roff_with_exit_codes() {
        let text = String::from_utf8(page().expect("render")).expect("utf-8");
        assert!(text.starts_with(".TH clusterrebootd 8"), "{text}");
        assert_eq!(text.matches(APOSTROPHE_PREAMBLE).count(), 1, "{text}");
        assert!(text.contains("EXIT STATUS"), "{text}");
        assert!(text.contains("lock unavailable"), "{text}");
        assert!(text.contains("validate\\-config"), "{text}");
    }

    /// Issue #19: the page stands alone: no references to sub-pages that are not installed,
    /// and the sections an administrator looks for.
    #[test]
    fn man_page_stands_alone() {
        let text = String::from_utf8(page().expect("render")).expect("utf-8");
        assert!(!text.contains("clusterrebootd\\-run(8)"), "{text}");
        assert!(
            !text.contains("(8)\n"),
            "a sub-page reference is left:\n{text}"
        );
        for section in [
            "COMMANDS",
            "CONFIGURATION",
            "FILES",
            "SIGNALS",
            "ENVIRONMENT",
            "EXAMPLES",
            "EXIT STATUS",
        ] {
            assert!(
                text.contains(&format!(".SH {section}\n"))
                    || text.contains(&format!(".SH \"{section}\"\n")),
                "no {section} section:\n{text}"
            );
        }
        for command in ["cluster pause", "status", "validate\\-config", "simulate"] {
            assert!(
                text.contains(&format!("\\fB{command}")),
                "no {command}:\n{text}"
            );
        }
        assert!(text.contains("RC_PHASE"), "{text}");
    }
}

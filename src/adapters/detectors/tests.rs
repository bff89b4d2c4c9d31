//! Detector tests against real files, real processes and fixture trees.

use super::*;
use crate::adapters::process::tests::write_script;

fn file(name: &str, path: &Path) -> DetectorSpec {
    DetectorSpec {
        name: name.into(),
        kind: DetectorKind::File { path: path.into() },
    }
}

fn command(name: &str, script: &str, codes: &[i32], timeout: Option<Duration>) -> DetectorSpec {
    DetectorSpec {
        name: name.into(),
        kind: DetectorKind::Command {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            success_exit_codes: codes.to_vec(),
            timeout,
        },
    }
}

fn preset(p: Preset) -> DetectorSpec {
    DetectorSpec {
        name: format!("preset:{}", p.name()),
        kind: DetectorKind::Preset { preset: p },
    }
}

/// Preset paths that all point into `dir` (nothing there yet).
fn fixture(dir: &Path) -> PresetPaths {
    PresetPaths {
        reboot_required: dir.join("reboot-required"),
        reboot_needed: dir.join("reboot-needed"),
        needs_restarting: dir.join("needs-restarting").display().to_string(),
        zypper: dir.join("zypper").display().to_string(),
        osrelease: dir.join("osrelease"),
        modules_dir: dir.join("modules"),
        boot_dir: dir.join("boot"),
        timeout: Duration::from_secs(10),
    }
}

async fn one(spec: DetectorSpec, paths: &PresetPaths) -> DetectorReport {
    evaluate_one(&spec, paths).await
}

#[tokio::test]
async fn file_present_absent_and_stat_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fixture(dir.path());
    let present = dir.path().join("present");
    std::fs::write(&present, "").expect("write");

    let r = one(file("f", &present), &paths).await;
    assert_eq!(r.outcome, DetectorOutcome::Required);
    assert_eq!(r.exit_code, None);

    let r = one(file("f", &dir.path().join("absent")), &paths).await;
    assert_eq!(r.outcome, DetectorOutcome::Clear);

    // A path below a regular file: ENOTDIR, which is neither "exists" nor "absent".
    let below = present.join("x");
    let r = one(file("f", &below), &paths).await;
    match r.outcome {
        DetectorOutcome::Error(e) => {
            let want = format!("stat {}: ", below.display());
            assert!(e.starts_with(&want), "expected prefix {want:?}, got {e:?}");
            assert!(e.to_lowercase().contains("not a directory"), "{e}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn command_exit_codes_without_a_list() {
    let paths = PresetPaths::default();
    let r = one(command("c", "exit 0", &[], None), &paths).await;
    assert_eq!((r.outcome, r.exit_code), (DetectorOutcome::Clear, Some(0)));
    let r = one(
        command("c", "echo out; echo err >&2; exit 3", &[], None),
        &paths,
    )
    .await;
    assert_eq!(r.outcome, DetectorOutcome::Required);
    assert_eq!(r.exit_code, Some(3));
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out", "err"));
}

#[tokio::test]
async fn command_exit_codes_with_a_list() {
    let paths = PresetPaths::default();
    let codes = [1, 101];
    for (code, want) in [
        (0, DetectorOutcome::Clear),
        (1, DetectorOutcome::Required),
        (101, DetectorOutcome::Required),
        (2, DetectorOutcome::Clear),
    ] {
        let r = one(command("c", &format!("exit {code}"), &codes, None), &paths).await;
        assert_eq!(r.outcome, want, "exit {code}");
        assert_eq!(r.exit_code, Some(code));
    }
    // 0 may itself mean "required" when listed.
    let r = one(command("c", "exit 0", &[0], None), &paths).await;
    assert_eq!(r.outcome, DetectorOutcome::Required);
}

#[tokio::test]
async fn command_timeout_signal_and_spawn_failure_are_errors() {
    let paths = PresetPaths::default();
    let r = one(
        command("slow", "sleep 30", &[], Some(Duration::from_millis(200))),
        &paths,
    )
    .await;
    assert_eq!(
        r.outcome,
        DetectorOutcome::Error("command detector slow timed out after 200ms".into())
    );
    assert!(r.duration < Duration::from_secs(2));
    assert_eq!(r.exit_code, Some(0));

    let r = one(command("sig", "kill -KILL $$", &[], None), &paths).await;
    assert_eq!(
        r.outcome,
        DetectorOutcome::Error("command detector sig killed by signal 9".into())
    );

    let spec = DetectorSpec {
        name: "missing".into(),
        kind: DetectorKind::Command {
            argv: vec!["/nonexistent/check".into()],
            success_exit_codes: vec![],
            timeout: None,
        },
    };
    let r = one(spec, &paths).await;
    match r.outcome {
        DetectorOutcome::Error(e) => {
            assert!(e.starts_with("command detector missing failed: "), "{e}");
            assert!(e.contains("/nonexistent/check"), "{e}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn command_sees_the_inherited_environment_only() {
    let paths = PresetPaths::default();
    let r = one(
        command("env", "env | grep -c '^RC_' ; test -n \"$PATH\"", &[], None),
        &paths,
    )
    .await;
    assert_eq!(r.stdout, "0");
    assert_eq!(r.outcome, DetectorOutcome::Clear);
}

#[tokio::test]
async fn debian_preset_uses_the_marker_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fixture(dir.path());
    assert_eq!(
        one(preset(Preset::Debian), &paths).await.outcome,
        DetectorOutcome::Clear
    );
    std::fs::write(&paths.reboot_required, "*** System restart required ***\n").expect("write");
    assert_eq!(
        one(preset(Preset::Debian), &paths).await.outcome,
        DetectorOutcome::Required
    );
}

#[tokio::test]
async fn rhel_preset_maps_needs_restarting_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fixture(dir.path());
    let argfile = dir.path().join("args");
    for (code, want) in [
        (0, Some(DetectorOutcome::Clear)),
        (1, Some(DetectorOutcome::Required)),
        (2, None),
    ] {
        let name = format!("needs-restarting-{code}");
        write_script(
            dir.path(),
            &name,
            &format!(
                "echo \"$@\" > {}; echo 'Reboot is required'; exit {code}",
                argfile.display()
            ),
        );
        let mut p = paths.clone();
        p.needs_restarting = dir.path().join(&name).display().to_string();
        let r = one(preset(Preset::Rhel), &p).await;
        match want {
            Some(w) => assert_eq!(r.outcome, w, "exit {code}"),
            None => assert!(
                matches!(&r.outcome, DetectorOutcome::Error(e) if e.contains("unexpected code 2")),
                "{:?}",
                r.outcome
            ),
        }
        assert_eq!(r.exit_code, Some(code));
        assert_eq!(r.stdout, "Reboot is required");
        assert_eq!(std::fs::read_to_string(&argfile).expect("args"), "-r\n");
    }
    // Missing command: an error naming it.
    let r = one(preset(Preset::Rhel), &paths).await;
    assert!(
        matches!(&r.outcome, DetectorOutcome::Error(e) if e.contains(&paths.needs_restarting)),
        "{:?}",
        r.outcome
    );
}

#[tokio::test]
async fn suse_preset_marker_file_or_zypper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fixture(dir.path());

    // zypper missing, no marker: an error naming zypper, never "clear".
    let r = one(preset(Preset::Suse), &paths).await;
    match &r.outcome {
        DetectorOutcome::Error(e) => assert!(e.contains("zypper needs-rebooting"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }

    // Marker present: required without running zypper (still missing).
    std::fs::write(&paths.reboot_needed, "").expect("write");
    assert_eq!(
        one(preset(Preset::Suse), &paths).await.outcome,
        DetectorOutcome::Required
    );
    std::fs::remove_file(&paths.reboot_needed).expect("rm");

    for (code, ok) in [
        (0, Some(DetectorOutcome::Clear)),
        (102, Some(DetectorOutcome::Required)),
        (1, None),
    ] {
        let name = format!("zypper-{code}");
        write_script(
            dir.path(),
            &name,
            &format!("[ \"$1\" = needs-rebooting ] || exit 99; exit {code}"),
        );
        let mut p = paths.clone();
        p.zypper = dir.path().join(&name).display().to_string();
        let r = one(preset(Preset::Suse), &p).await;
        match ok {
            Some(w) => assert_eq!(r.outcome, w, "exit {code}"),
            None => assert!(
                matches!(r.outcome, DetectorOutcome::Error(_)),
                "{:?}",
                r.outcome
            ),
        }
        assert_eq!(r.exit_code, Some(code));
    }
}

/// Builds `modules/<v>/modules.dep` for each version.
fn modules(paths: &PresetPaths, versions: &[&str]) {
    for v in versions {
        let d = paths.modules_dir.join(v);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("modules.dep"), "").expect("write");
    }
}

#[tokio::test]
async fn kernel_preset_against_fixture_trees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fixture(dir.path());

    // No running version readable.
    let r = one(preset(Preset::Kernel), &paths).await;
    assert!(
        matches!(r.outcome, DetectorOutcome::Error(_)),
        "{:?}",
        r.outcome
    );

    std::fs::write(&paths.osrelease, "6.1.0-9-amd64\n").expect("write");
    // Nothing installed anywhere: error.
    let r = one(preset(Preset::Kernel), &paths).await;
    assert!(
        matches!(&r.outcome, DetectorOutcome::Error(e) if e.contains("no installed kernel")),
        "{:?}",
        r.outcome
    );

    // Fallback to /boot when /lib/modules has nothing usable.
    std::fs::create_dir_all(&paths.boot_dir).expect("mkdir");
    for f in [
        "vmlinuz-6.1.0-9-amd64",
        "vmlinuz-6.1.0-18-amd64",
        "config-6.2.0",
        "vmlinuz-",
    ] {
        std::fs::write(paths.boot_dir.join(f), "").expect("write");
    }
    let r = one(preset(Preset::Kernel), &paths).await;
    assert_eq!(r.outcome, DetectorOutcome::Required);
    assert_eq!(
        r.stdout,
        "running 6.1.0-9-amd64, newest installed 6.1.0-18-amd64"
    );

    // /lib/modules wins over /boot once it lists kernels; a leftover directory without
    // modules.dep does not count.
    modules(&paths, &["6.1.0-9-amd64", "5.10.0-28-amd64"]);
    std::fs::create_dir_all(paths.modules_dir.join("6.5.0-1-amd64/updates/dkms")).expect("mkdir");
    let r = one(preset(Preset::Kernel), &paths).await;
    assert_eq!(r.outcome, DetectorOutcome::Clear, "{}", r.stdout);
    assert_eq!(
        r.stdout,
        "running 6.1.0-9-amd64, newest installed 6.1.0-9-amd64"
    );

    modules(&paths, &["6.1.0-10-amd64"]);
    assert_eq!(
        one(preset(Preset::Kernel), &paths).await.outcome,
        DetectorOutcome::Required
    );

    // Running newer than anything installed (e.g. old one removed): clear.
    std::fs::write(&paths.osrelease, "6.2.0\n").expect("write");
    assert_eq!(
        one(preset(Preset::Kernel), &paths).await.outcome,
        DetectorOutcome::Clear
    );
}

#[test]
fn version_comparison_table() {
    use Ordering::*;
    let table = [
        ("6.1.0-18-amd64", "6.1.0-9-amd64", Greater),
        ("5.10", "5.9", Greater),
        ("5.9", "5.10", Less),
        ("6.1.0-18-amd64", "6.1.0-18-amd64", Equal),
        ("6.1.0", "6.1.0-1", Less),
        ("6.1.0-rc1", "6.1.0", Greater),
        ("6.1~rc1", "6.1", Less),
        (
            "5.14.0-362.el9.x86_64",
            "5.14.0-70.13.1.el9_0.x86_64",
            Greater,
        ),
        ("6.1.007", "6.1.7", Equal),
        ("6.1.10", "6.1.9a", Greater),
        ("6.1a", "6.1b", Less),
        // sort -V's letters-before-digits rule; rpm would disagree (a known limit of the
        // kernel preset on RHEL, where the rhel preset is the better choice).
        (
            "4.18.0-553.el8_10.x86_64",
            "4.18.0-553.1.1.el8_10.x86_64",
            Greater,
        ),
        ("", "", Equal),
        ("1", "", Greater),
    ];
    for (a, b, want) in table {
        assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
        assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
    }
}

fn report(name: &str, outcome: DetectorOutcome) -> DetectorReport {
    DetectorReport {
        name: name.into(),
        outcome,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        duration: Duration::ZERO,
    }
}

#[test]
fn combine_error_wins_then_required() {
    use DetectorOutcome::*;
    assert_eq!(combine(&[]), DetectorResult::NotRequired);
    assert_eq!(
        combine(&[report("a", Clear), report("b", Clear)]),
        DetectorResult::NotRequired
    );
    assert_eq!(
        combine(&[
            report("a", Required),
            report("b", Clear),
            report("c", Required)
        ]),
        DetectorResult::Required {
            by: vec!["a".into(), "c".into()]
        }
    );
    assert_eq!(
        combine(&[
            report("a", Error("boom".into())),
            report("b", Required),
            report("c", Error("stat /x: denied".into())),
        ]),
        DetectorResult::Error {
            detail: "a: boom; c: stat /x: denied".into()
        }
    );
}

#[test]
fn format_reports_is_the_go_block() {
    let reports = vec![
        DetectorReport {
            duration: Duration::from_micros(1_600),
            ..report("file:/var/run/reboot-required", DetectorOutcome::Required)
        },
        DetectorReport {
            exit_code: Some(0),
            stdout: "  line one\nline two \n".into(),
            stderr: String::new(),
            duration: Duration::from_millis(1500),
            ..report("command:/usr/bin/check", DetectorOutcome::Clear)
        },
        DetectorReport {
            exit_code: Some(0),
            stderr: "oops".into(),
            duration: Duration::from_millis(123_004),
            ..report(
                "slow",
                DetectorOutcome::Error("command detector slow timed out after 2m0s".into()),
            )
        },
    ];
    let want = concat!(
        "  - file:/var/run/reboot-required => reboot-required (duration 2ms)\n",
        "  - command:/usr/bin/check => clear (duration 1.5s)\n",
        "      exit code: 0\n",
        "      stdout: line one\nline two\n",
        "  - slow => error: command detector slow timed out after 2m0s (duration 2m3.004s)\n",
        "      exit code: 0\n",
        "      stderr: oops\n",
    );
    let got = format_reports(&reports);
    assert_eq!(got, want, "\nexpected:\n{want}\ngot:\n{got}");
    assert_eq!(format_reports(&[]), "");
}

#[tokio::test]
async fn evaluate_runs_all_concurrently_and_keeps_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = fixture(dir.path());
    let specs = vec![
        command("slow-required", "sleep 0.4; exit 1", &[], None),
        file("absent", &dir.path().join("nothing")),
        command("slow-clear", "sleep 0.4; exit 0", &[], None),
        command("broken", "exit 0", &[], None),
    ];
    let mut specs = specs;
    specs[3].kind = DetectorKind::Command {
        argv: vec!["/nonexistent/x".into()],
        success_exit_codes: vec![],
        timeout: None,
    };
    let t0 = Instant::now();
    let reports = evaluate(&specs, &paths).await;
    let took = t0.elapsed();
    let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["slow-required", "absent", "slow-clear", "broken"]);
    assert_eq!(reports[0].outcome, DetectorOutcome::Required);
    assert_eq!(reports[1].outcome, DetectorOutcome::Clear);
    assert_eq!(reports[2].outcome, DetectorOutcome::Clear);
    assert!(matches!(reports[3].outcome, DetectorOutcome::Error(_)));
    assert!(
        took < Duration::from_millis(780),
        "not concurrent: {took:?}"
    );
    assert!(
        matches!(combine(&reports), DetectorResult::Error { detail } if detail.starts_with("broken: "))
    );
}

#[test]
fn default_preset_paths_are_the_real_system() {
    let p = PresetPaths::default();
    assert_eq!(p.reboot_required, Path::new("/var/run/reboot-required"));
    assert_eq!(p.reboot_needed, Path::new("/var/run/reboot-needed"));
    assert_eq!(p.needs_restarting, "needs-restarting");
    assert_eq!(p.zypper, "zypper");
    assert_eq!(p.osrelease, Path::new("/proc/sys/kernel/osrelease"));
    assert_eq!(p.modules_dir, Path::new("/lib/modules"));
    assert_eq!(p.boot_dir, Path::new("/boot"));
}

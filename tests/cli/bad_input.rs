//! Bad input never panics or hangs: each case exits 2 with a message naming the file.

use super::{outcome, write};

fn rejected(path: &str) -> String {
    let (code, out, err) = outcome(&["validate-config", "--config", path]);
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn empty_file_reports_the_missing_required_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", b"");
    let err = rejected(&p);
    assert!(err.contains("reboot_required_detectors"), "{err}");
    assert!(err.contains("health_script"), "{err}");
}

#[test]
fn yaml_syntax_error_gives_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "config.yaml",
        b"node_name: a\nwindows: {allow: [\n  x: : :\n",
    );
    let err = rejected(&p);
    assert!(err.contains(&p), "{err}");
    assert!(err.contains(" line "), "{err}");
    assert!(err.contains(" column "), "{err}");
}

#[test]
fn non_utf8_bytes_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", b"node_name: \xff\xfe\n");
    let err = rejected(&p);
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn a_directory_is_not_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().display().to_string();
    let err = rejected(&p);
    assert!(err.contains("directory"), "{err}");
}

#[test]
fn a_huge_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yaml");
    let f = std::fs::File::create(&path).expect("create");
    f.set_len(100 * 1024 * 1024).expect("sparse 100 MB file");
    let err = rejected(&path.display().to_string());
    assert!(err.contains("larger than"), "{err}");
}

#[test]
fn top_level_list_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", b"- a\n- b\n");
    let err = rejected(&p);
    assert!(err.contains("top level must be a mapping"), "{err}");
}

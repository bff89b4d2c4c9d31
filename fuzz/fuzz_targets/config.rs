//! The configuration loader: YAML parse, `config.d` merge, typed decode, validation.
//!
//! Input: UTF-8 text; NUL bytes split it into the main file and up to three drop-ins.
//! Properties:
//! - loading and validating never panics (every problem is an error naming the field);
//! - a configuration that validates, written back as YAML and loaded again, loads without a
//!   problem into the same typed configuration and validates again.
#![no_main]

use clusterrebootd::config::load::{self, Loaded};
use clusterrebootd::config::{ValidateEnv, validate, validate_loaded};
use libfuzzer_sys::fuzz_target;

fn env() -> ValidateEnv {
    ValidateEnv {
        hostname: Some("fuzz-host".into()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let texts: Vec<&str> = text.splitn(4, '\0').collect();
    let Ok(loaded) = load::from_strs(&texts) else {
        return;
    };
    let raw = loaded.raw.clone();
    if validate_loaded(loaded, &env()).is_err() {
        return;
    }
    let yaml = serde_yaml_ng::to_string(&raw).expect("a decoded configuration serialises");
    let again: Loaded = match load::from_strs(&[&yaml]) {
        Ok(l) => l,
        Err(e) => panic!("round trip does not load: {e}\n{yaml}"),
    };
    assert!(
        again.problems.is_empty(),
        "round trip has problems {:?}\n{yaml}",
        again.problems
    );
    assert_eq!(
        again.raw, raw,
        "round trip changed the configuration\n{yaml}"
    );
    if let Err(e) = validate(&again.raw, &env()) {
        panic!("round trip does not validate: {e}\n{yaml}");
    }
});

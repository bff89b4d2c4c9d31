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

/// The man page: `.TH` first, clap's sections, then EXIT STATUS from the exit-code contract.
pub fn page() -> std::io::Result<Vec<u8>> {
    let cmd = super::Cli::command();
    let man = clap_mangen::Man::new(cmd).section("8");
    let mut exit = Roff::default();
    exit.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in super::EXIT_CODES {
        exit.control("TP", []);
        exit.text([bold(code.to_string())]);
        exit.text([roman(meaning)]);
    }
    let mut out = section(&|w| man.render_title(w))?;
    out.push_str(APOSTROPHE_PREAMBLE);
    let sections: [Section<'_>; 7] = [
        &|w| man.render_name_section(w),
        &|w| man.render_synopsis_section(w),
        &|w| man.render_description_section(w),
        &|w| man.render_options_section(w),
        &|w| man.render_subcommands_section(w),
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
}

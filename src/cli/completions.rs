//! `completions bash|zsh|fish`: prints a shell completion script for the whole command line.

use std::io::Write;

use clap::{CommandFactory, ValueEnum};

use crate::exit::Exit;

/// The shells a completion script can be generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// GNU bash (`source <(clusterrebootd completions bash)`).
    Bash,
    /// Z shell (write it to a `_clusterrebootd` file in `$fpath`).
    Zsh,
    /// fish (write it to `~/.config/fish/completions/clusterrebootd.fish`).
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(s: Shell) -> Self {
        match s {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::from(shell),
        &mut cmd,
        "clusterrebootd",
        &mut out,
    );
    out
}

/// Prints the completion script for `shell` on stdout.
pub fn run(shell: Shell) -> Exit {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(&script(shell))
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("clusterrebootd completions: {e}");
            Exit::Runtime
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(script(shell)).expect("utf-8");
            assert!(!text.is_empty(), "{shell:?}");
            assert!(text.contains("validate-config"), "{shell:?}: {text}");
        }
    }
}

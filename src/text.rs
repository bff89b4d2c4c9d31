//! Text that others wrote, made safe to show and to keep.
//!
//! Values read from etcd (pause reasons, node names in records, queue values) and from files
//! (script output, state files) are written by people and programs this daemon does not trust
//! (issue #20). Two rules apply everywhere such text goes:
//!
//! - **To a terminal** it goes through [`for_terminal`]: control characters (ESC, BEL, CR, C1
//!   codes, DEL) and the Unicode bidirectional overrides are shown escaped (`\u{1b}`), so a
//!   pause reason cannot clear the screen, retitle the terminal or rewrite the line above. The
//!   CLI applies it to the whole human output of a command, so no renderer can forget it.
//! - **Into a local record** (`state.json`, the journal) it is capped with [`cap`]: a 1 MB value
//!   in etcd must not make every journal append fail over the record limit.

use std::borrow::Cow;
use std::fmt::Write;

/// Largest piece of text copied from etcd into a local record (the pause reason, say).
pub const MAX_COPIED_TEXT: usize = 4096;

/// Whether `c` must not reach a terminal raw.
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n')
        // Bidirectional embeddings, overrides and isolates: they reorder what is shown.
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character except the line feed (and the bidi controls) escaped
/// the way Rust writes them (`\t`, `\r`, `\u{1b}`); unchanged (borrowed) when it has none.
/// Use for whole multi-line outputs; for one value on one line use [`one_line`].
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    escape(text, unsafe_char)
}

/// Like [`for_terminal`] but also escapes line feeds: for a value shown inside one line.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || unsafe_char(c))
}

fn escape(text: &str, bad: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&bad) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if bad(c) {
            // `escape_debug` writes `\n`, `\t`, `\r` short and the rest as `\u{…}`.
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` safe inside HTML text and quoted attribute values: `&`, `<`, `>`, `"` and `'` as
/// entities (the web page, `fleet::page`); unchanged (borrowed) when it has none.
pub fn html(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes (on a character boundary) plus a marker that says how
/// long the original was; unchanged when it fits.
pub fn cap(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated: {} bytes in all]", &text[..end], text.len())
}

/// Bytes of unknown encoding as text (invalid UTF-8 replaced), cut like [`cap`] before they
/// are converted, so a huge value is never copied whole.
pub fn cap_bytes(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let head = String::from_utf8_lossy(&bytes[..max]);
    format!("{head}… [truncated: {} bytes in all]", bytes.len())
}

/// Prints `text` on stdout. A closed stdout (`simulate --cluster 50 | head`) is not an error
/// for a report nobody reads any more: it ends quietly (`false`), as `ls | head` does, instead
/// of panicking in `print!`. Other write errors are said on stderr.
pub fn emit(text: &str) -> bool {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("cannot write to stdout: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #20: a pause reason with ESC/BEL bytes was printed raw.
    #[test]
    fn control_characters_are_escaped_for_terminals() {
        let evil = "maintenance\u{1b}]0;pwned\u{7}\u{1b}[2J\rroot\u{9b}x\u{7f}\u{202e}gnp";
        let shown = for_terminal(evil);
        assert!(!shown.chars().any(unsafe_char), "{shown:?}");
        assert_eq!(
            shown,
            r"maintenance\u{1b}]0;pwned\u{7}\u{1b}[2J\rroot\u{9b}x\u{7f}\u{202e}gnp"
        );
        assert_eq!(for_terminal("a\nb\tc"), "a\nb\\tc");
        assert_eq!(one_line("a\nb"), "a\\nb");
        assert!(matches!(for_terminal("plain — ünïcode"), Cow::Borrowed(_)));
    }

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert!(matches!(html("plain"), Cow::Borrowed(_)));
    }

    /// Issue #20: a 1 MB pause value was copied whole into every journal record.
    #[test]
    fn long_text_is_capped_on_a_char_boundary_with_a_marker() {
        assert_eq!(cap("short".into(), 10), "short");
        let long = "é".repeat(1_000_000);
        let c = cap(long, MAX_COPIED_TEXT);
        assert!(c.len() < MAX_COPIED_TEXT + 64, "{}", c.len());
        assert!(
            c.ends_with("… [truncated: 2000000 bytes in all]"),
            "{}",
            &c[c.len() - 60..]
        );
        assert!(c.starts_with("éé"));
        let b = cap_bytes(&vec![b'x'; 1 << 20], MAX_COPIED_TEXT);
        assert_eq!(
            b.len(),
            MAX_COPIED_TEXT + "… [truncated: 1048576 bytes in all]".len()
        );
        assert_eq!(cap_bytes(b"ok\xff", 10), "ok\u{fffd}");
    }
}

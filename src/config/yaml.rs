//! A small YAML document model with positions, decoded the way the Go daemon's yaml.v3 does.
//!
//! serde's YAML value types forget what a scalar looked like (`+5` becomes the number 5, `yes`
//! is just a string) and where it was. The Go daemon decodes with yaml.v3, whose rules depend on
//! both the text and the target type: any scalar goes into a string field as written, `yes`/`on`
//! go into a bool field, `30.0` into an int field. So the configuration is parsed into [`Node`]s
//! that keep the scalar's text, whether it was quoted, its tag and its line, and
//! [`super::decode`] applies the yaml.v3 rules per field.
//!
//! Parsing also does what yaml.v3 does before decoding: aliases are expanded (with a cap against
//! "billion laughs" documents), merge keys (`<<: *anchor`) are applied, and a key set twice in
//! one mapping is reported with both lines. Only the first document of a stream is used.

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Nesting deeper than this is refused (the decoder and merge walk recurse).
const MAX_DEPTH: usize = 128;

/// Most nodes one file may expand to through aliases; real configurations have a few hundred.
const MAX_NODES: usize = 100_000;

/// Where a node starts: which file (index into the loader's file list) and its 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Index of the file in the list the loader keeps (0 = main file).
    pub file: usize,
    /// 1-based line.
    pub line: usize,
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub mark: Mark,
    /// What it is.
    pub kind: Kind,
}

/// The three kinds of YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar as written.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order, merge keys already applied and duplicates removed.
    Map(Vec<(Node, Node)>),
}

/// A scalar: its text, whether it was quoted or a block (then it is always a string), its tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The text after unescaping.
    pub text: String,
    /// Quoted (`'…'`, `"…"`) or block (`|`, `>`) scalars are strings whatever they contain.
    pub quoted: bool,
    /// Core-schema tag suffix (`str`, `int`, …) when one was given, or the full tag otherwise.
    pub tag: Option<String>,
}

/// A scalar resolved by yaml.v3's rules (`resolve.go`): what an untyped decode would produce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolved<'a> {
    /// `~`, `null`, empty.
    Null,
    /// `true`/`false` in the three YAML 1.2 spellings.
    Bool(bool),
    /// An integer (Go `strconv.ParseInt(s, 0, 64)` after removing `_`: `0x`, `0o`, `0b`, `0755`).
    Int(i128),
    /// A float (`1.5`, `1e3`, `.inf`, `.nan`).
    Float(f64),
    /// Anything else, or anything quoted or tagged `!!str`.
    Str(&'a str),
}

impl Scalar {
    /// The scalar as yaml.v3 resolves it before looking at the target type.
    pub fn resolve(&self) -> Resolved<'_> {
        let t = self.text.as_str();
        match self.tag.as_deref() {
            None => {}
            Some("str") | Some("binary") | Some("timestamp") => return Resolved::Str(t),
            Some("null") | Some("bool") | Some("int") | Some("float") => {}
            Some(_) => return Resolved::Str(t),
        }
        if self.quoted && self.tag.is_none() {
            return Resolved::Str(t);
        }
        match t {
            "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
            "true" | "True" | "TRUE" => return Resolved::Bool(true),
            "false" | "False" | "FALSE" => return Resolved::Bool(false),
            ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
                return Resolved::Float(f64::INFINITY);
            }
            "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
            _ => {}
        }
        let first = t.as_bytes().first().copied().unwrap_or(b' ');
        if first == b'.' {
            if let Ok(f) = t.parse::<f64>() {
                return Resolved::Float(f);
            }
        } else if first.is_ascii_digit() || first == b'+' || first == b'-' {
            if looks_like_timestamp(t) {
                return Resolved::Str(t);
            }
            let plain: String = t.chars().filter(|&c| c != '_').collect();
            if let Some(i) = go_parse_int(&plain) {
                return Resolved::Int(i);
            }
            if yaml_style_float(&plain)
                && let Ok(f) = plain.parse::<f64>()
            {
                return Resolved::Float(f);
            }
        }
        Resolved::Str(t)
    }
}

/// yaml.v3 only tries timestamps for text that starts with four digits and a `-`.
fn looks_like_timestamp(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// Go's `strconv.ParseInt(s, 0, 64)` (falling back to `ParseUint`), plus yaml.v3's explicit
/// `0b`/`0o` handling: sign, then `0x`/`0o`/`0b` prefix, a leading `0` for octal, or decimal.
fn go_parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = u64::from_str_radix(digits, radix).ok()? as i128;
    let v = if neg { -v } else { v };
    (v >= i64::MIN as i128).then_some(v)
}

/// yaml.v3's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

impl Node {
    /// The scalar, if this is one.
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is a null scalar (`~`, `null`, or nothing at all).
    pub fn is_null(&self) -> bool {
        self.scalar()
            .is_some_and(|s| matches!(s.resolve(), Resolved::Null))
    }

    /// An empty mapping (what an empty file means).
    pub fn empty_map(mark: Mark) -> Node {
        Node {
            mark,
            kind: Kind::Map(Vec::new()),
        }
    }

    /// "a list", "a mapping" or the scalar quoted, for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar(s) => format!("{:?}", s.text),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }
}

/// A key set twice in one mapping (yaml.v3: "mapping key already defined").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// Field path of the key, `a.b[1].c`.
    pub path: String,
    /// Line of the first occurrence (which is the one kept).
    pub first: usize,
    /// Line of the repeated one.
    pub again: usize,
}

/// A parsed file: the first document, duplicates found, and how many documents there were.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The first document (`None` for an empty stream).
    pub doc: Option<Node>,
    /// Keys set twice.
    pub duplicates: Vec<Duplicate>,
    /// Documents in the stream (only the first is used).
    pub documents: usize,
    /// Line where the second document starts, if there is one.
    pub second_doc_line: Option<usize>,
}

/// A syntax error: message and 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The parser's words.
    pub message: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    file: usize,
    anchors: std::collections::HashMap<usize, Node>,
    nodes: usize,
    duplicates: Vec<Duplicate>,
}

fn err_at(mark: Marker, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        message: message.into(),
        line: mark.line(),
        column: mark.col() + 1,
    }
}

fn core_tag(tag: Option<Tag>) -> Option<String> {
    let t = tag?;
    if t.handle == "tag:yaml.org,2002:" || t.handle == "!!" {
        Some(t.suffix)
    } else {
        Some(format!("{}{}", t.handle, t.suffix))
    }
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), SyntaxError> {
        self.parser
            .next_token()
            .map_err(|e| err_at(*e.marker(), e.info()))
    }

    fn count(&mut self, n: usize, mark: Marker) -> Result<(), SyntaxError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(err_at(
                mark,
                format!("document expands to more than {MAX_NODES} nodes (excessive aliasing)"),
            ));
        }
        Ok(())
    }

    fn node(
        &mut self,
        ev: Event,
        mark: Marker,
        depth: usize,
        path: &str,
    ) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(err_at(
                mark,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.count(1, mark)?;
        let at = Mark {
            file: self.file,
            line: mark.line(),
        };
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => (
                Node {
                    mark: at,
                    kind: Kind::Scalar(Scalar {
                        text,
                        quoted: !matches!(style, TScalarStyle::Plain),
                        tag: core_tag(tag),
                    }),
                },
                anchor,
            ),
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(err_at(mark, "alias to an unknown anchor"));
                };
                self.count(count_nodes(&target), mark)?;
                return Ok(target);
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, m) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    let p = format!("{path}[{}]", items.len());
                    items.push(self.node(ev, m, depth + 1, &p)?);
                }
                (
                    Node {
                        mark: at,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                let mut merges = Vec::new();
                loop {
                    let (ev, m) = self.next()?;
                    if ev == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(ev, m, depth + 1, path)?;
                    let key_text = key.scalar().map(|s| s.text.clone());
                    let vp = child_path(path, key_text.as_deref().unwrap_or("?"));
                    let (ev, m) = self.next()?;
                    let value = self.node(ev, m, depth + 1, &vp)?;
                    if is_merge_key(&key) {
                        merges.push((value, m));
                        continue;
                    }
                    let dup = entries.iter().find(|(k, _)| {
                        k.scalar().map(|s| &s.text) == key_text.as_ref() && key_text.is_some()
                    });
                    if let Some((first, _)) = dup {
                        self.duplicates.push(Duplicate {
                            path: vp,
                            first: first.mark.line,
                            again: key.mark.line,
                        });
                        continue;
                    }
                    entries.push((key, value));
                }
                for (source, m) in merges {
                    apply_merge(&mut entries, source, m)?;
                }
                (
                    Node {
                        mark: at,
                        kind: Kind::Map(entries),
                    },
                    anchor,
                )
            }
            other => return Err(err_at(mark, format!("unexpected YAML event {other:?}"))),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn count_nodes(n: &Node) -> usize {
    1 + match &n.kind {
        Kind::Scalar(_) => 0,
        Kind::Seq(items) => items.iter().map(count_nodes).sum(),
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, v)| count_nodes(k) + count_nodes(v))
            .sum(),
    }
}

/// yaml.v3 `isMerge`: a plain `<<` scalar, untagged or tagged `!!merge`.
fn is_merge_key(key: &Node) -> bool {
    key.scalar().is_some_and(|s| {
        s.text == "<<" && !s.quoted && matches!(s.tag.as_deref(), None | Some("merge"))
    })
}

/// Merge key semantics: keys written in the mapping win, then the merged mappings in order
/// (the first one that has a key wins).
fn apply_merge(
    entries: &mut Vec<(Node, Node)>,
    source: Node,
    mark: Marker,
) -> Result<(), SyntaxError> {
    let maps = match source.kind {
        Kind::Map(m) => vec![m],
        Kind::Seq(items) => {
            let mut maps = Vec::new();
            for item in items {
                match item.kind {
                    Kind::Map(m) => maps.push(m),
                    _ => {
                        return Err(err_at(
                            mark,
                            "a merge key `<<` needs a mapping or a list of mappings",
                        ));
                    }
                }
            }
            maps
        }
        _ => {
            return Err(err_at(
                mark,
                "a merge key `<<` needs a mapping or a list of mappings",
            ));
        }
    };
    for m in maps {
        for (k, v) in m {
            let text = k.scalar().map(|s| s.text.clone());
            let present = entries
                .iter()
                .any(|(e, _)| text.is_some() && e.scalar().map(|s| &s.text) == text.as_ref());
            if !present {
                entries.push((k, v));
            }
        }
    }
    Ok(())
}

/// Parses a YAML stream; `file` is stored in every node's [`Mark`].
pub fn parse(text: &str, file: usize) -> Result<Parsed, SyntaxError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        file,
        anchors: std::collections::HashMap::new(),
        nodes: 0,
        duplicates: Vec::new(),
    };
    let mut doc = None;
    let mut documents = 0;
    let mut second_doc_line = None;
    loop {
        let (ev, mark) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents == 2 {
                    second_doc_line = Some(mark.line());
                }
                b.anchors.clear();
            }
            other => {
                let node = b.node(other, mark, 0, "")?;
                if documents <= 1 {
                    doc = Some(node);
                    // Anchors do not cross documents; duplicates only count in the one used.
                } else {
                    b.duplicates
                        .retain(|d| d.again < second_doc_line.unwrap_or(usize::MAX));
                }
            }
        }
    }
    Ok(Parsed {
        doc,
        duplicates: b.duplicates,
        documents,
        second_doc_line,
    })
}

/// Deep merge of a drop-in over the main document: mappings merge key by key, everything else
/// (lists included) is replaced.
pub fn merge(base: &mut Node, over: Node) {
    match (&mut base.kind, over.kind) {
        (Kind::Map(b), Kind::Map(o)) => {
            for (k, v) in o {
                let text = k.scalar().map(|s| s.text.clone());
                let slot = b.iter_mut().find(|(bk, _)| {
                    text.is_some() && bk.scalar().map(|s| &s.text) == text.as_ref()
                });
                match slot {
                    Some((_, bv)) => merge(bv, v),
                    None => b.push((k, v)),
                }
            }
        }
        (_, kind) => {
            base.kind = kind;
            base.mark = over.mark;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Node {
        parse(text, 0).expect("parse").doc.expect("doc")
    }

    fn scalar(text: &str) -> Scalar {
        match doc(&format!("k: {text}\n")).kind {
            Kind::Map(mut e) => match e.remove(0).1.kind {
                Kind::Scalar(s) => s,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scalars_resolve_like_yaml_v3() {
        use Resolved::*;
        let cases: &[(&str, Resolved<'_>)] = &[
            ("", Null),
            ("~", Null),
            ("Null", Null),
            ("true", Bool(true)),
            ("FALSE", Bool(false)),
            ("yes", Str("yes")),
            ("30", Int(30)),
            ("+5", Int(5)),
            ("-3", Int(-3)),
            ("0x1F", Int(31)),
            ("0o17", Int(15)),
            ("0755", Int(493)),
            ("0b101", Int(5)),
            ("1_000", Int(1000)),
            ("09", Float(9.0)),
            ("30.0", Float(30.0)),
            ("1e3", Float(1000.0)),
            (".5", Float(0.5)),
            ("'30'", Str("30")),
            ("!!str 30", Str("30")),
            ("!!int '30'", Int(30)),
            ("2024-01-02", Str("2024-01-02")),
            ("1.2.3", Str("1.2.3")),
            ("soon", Str("soon")),
        ];
        for (text, want) in cases {
            let s = scalar(text);
            assert_eq!(s.resolve(), *want, "{text}");
        }
        assert!(matches!(scalar(".inf").resolve(), Float(f) if f.is_infinite()));
    }

    #[test]
    fn merge_keys_expand_with_explicit_keys_winning() {
        let d = doc("base: &b {a: 1, b: 2}\nother: &o {b: 9, c: 3}\nx:\n  b: 5\n  <<: [*b, *o]\n");
        let Kind::Map(top) = d.kind else { panic!() };
        let x = &top[2].1;
        let Kind::Map(e) = &x.kind else { panic!() };
        let got: Vec<(String, String)> = e
            .iter()
            .map(|(k, v)| {
                (
                    k.scalar().expect("k").text.clone(),
                    v.scalar().expect("v").text.clone(),
                )
            })
            .collect();
        let want = [("b", "5"), ("a", "1"), ("c", "3")];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
    }

    #[test]
    fn duplicate_keys_name_both_lines() {
        let p = parse("a: 1\nm:\n  x: 1\n  x: 2\na: 3\n", 0).expect("parse");
        assert_eq!(
            p.duplicates,
            vec![
                Duplicate {
                    path: "m.x".into(),
                    first: 3,
                    again: 4
                },
                Duplicate {
                    path: "a".into(),
                    first: 1,
                    again: 5
                },
            ]
        );
    }

    #[test]
    fn only_the_first_document_is_used() {
        let p = parse("a: 1\n---\nb: 2\n---\nc: 3\n", 0).expect("parse");
        assert_eq!(p.documents, 3);
        assert_eq!(p.second_doc_line, Some(2));
        assert_eq!(p.doc.expect("doc"), doc("a: 1\n"));
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = if i == 1 {
                "a".to_string()
            } else {
                format!("a{}", i - 1)
            };
            bomb.push_str(&format!(
                "a{i}: &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let e = parse(&bomb, 0).expect_err("bomb");
        assert!(e.message.contains("excessive aliasing"), "{e:?}");
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        let e = parse(&deep, 0).expect_err("deep");
        assert!(
            e.message.contains("nested deeper") || e.message.contains("recursion limit"),
            "{e:?}"
        );
        let deep = format!("{}x{}", "- ".repeat(200), "");
        assert!(parse(&deep, 0).is_err(), "block nesting is capped too");
    }
}

//! Finds the key a toml error points at.
//!
//! toml reports where an error is (a byte span) but keeps the key path to
//! itself once it has a span, so an error like "unknown variant" would not
//! say which key it is about. We rebuild the path: deserialise the same text
//! into a tree that keeps the span of every key, then take the last key that
//! starts at or before the error. A value always follows its key, so that key
//! is the one the value belongs to.

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use std::fmt;
use toml::Spanned;

/// A TOML document reduced to its shape and the spans of its keys.
enum Node {
    Table(Vec<(Spanned<String>, Node)>),
    Array(Vec<Node>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        loop {
            match map.next_key_seed(KeySeed)? {
                None => break,
                Some(Some(key)) => {
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                // toml hands a datetime over as a one-entry map whose key
                // has no span; it is a value, not a table.
                Some(None) => {
                    map.next_value::<IgnoredAny>()?;
                    return Ok(Node::Leaf);
                }
            }
        }
        Ok(Node::Table(entries))
    }
}

/// Reads a key with its span, or `None` for a key that has none.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<Spanned<String>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Ok(Spanned::<String>::deserialize(deserializer).ok())
    }
}

/// The dotted path (`restart.policy`, `mounts[1].source`) of the key that
/// the byte `offset` of `text` falls under, if any.
pub(crate) fn key_at(text: &str, offset: usize) -> Option<String> {
    let root: Node = toml::from_str(text).ok()?;
    let mut keys = Vec::new();
    collect(&root, "", &mut keys);
    // An error about a table as a whole points at its `[header]`, before
    // the key in it; count the header's keys as reached.
    let rest = text.get(offset..).unwrap_or("");
    let line_start = text
        .get(..offset)
        .map_or(0, |before| before.rfind('\n').map_or(0, |i| i + 1));
    let at_header = rest.starts_with('[')
        && text
            .get(line_start..offset)
            .is_some_and(|indent| indent.trim().is_empty());
    let limit = if at_header {
        offset + rest.find('\n').unwrap_or(rest.len())
    } else {
        offset
    };
    keys.into_iter()
        .filter(|(_, start)| *start <= limit)
        .max_by_key(|(_, start)| *start)
        .map(|(path, _)| path)
}

fn collect(node: &Node, path: &str, out: &mut Vec<(String, usize)>) {
    match node {
        Node::Table(entries) => {
            for (key, value) in entries {
                let name = quote_key(key.get_ref());
                let child = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                out.push((child.clone(), key.span().start));
                collect(value, &child, out);
            }
        }
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect(item, &format!("{path}[{i}]"), out);
            }
        }
        Node::Leaf => {}
    }
}

/// Writes a key as TOML would need it written, so a path stays unambiguous
/// when a key (an environment variable, say) contains a dot.
pub(crate) fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // A span from toml is always on a char boundary; this only guards
    // against slicing mid-character if that ever changes.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A toml syntax error's message on one line. toml leaves the message empty
/// for some errors (`key =` with nothing after it, a stray control
/// character) and only points at the place; then the message says what is
/// there, so no error reaches an operator as a bare position.
pub(crate) fn toml_message(text: &str, message: &str, offset: Option<usize>) -> String {
    let message = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(", ");
    if !message.is_empty() {
        return message;
    }
    match offset.and_then(|o| text.get(o..)).and_then(|rest| rest.chars().next()) {
        Some(c) => format!("TOML syntax error at {c:?}"),
        None => "TOML syntax error: the text ends where a value or key should follow".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DOC: &str = r#"command = ["/a"]
restart.policy = "x"
env = { TZ = "UTC", "a.b" = "c" }
[limits]
cpu = 0.5
[[mounts]]
type = "bind"
[[mounts]]
type = "tmpfs"
[health]
when = 1979-05-27T07:32:00Z
"#;

    fn at(needle: &str) -> Option<String> {
        let offset = DOC.find(needle).unwrap_or(usize::MAX);
        key_at(DOC, offset)
    }

    #[test]
    fn paths() {
        assert_eq!(at("\"/a\"").as_deref(), Some("command"));
        assert_eq!(at("\"x\"").as_deref(), Some("restart.policy"));
        assert_eq!(at("\"UTC\"").as_deref(), Some("env.TZ"));
        assert_eq!(at("\"c\"").as_deref(), Some("env.\"a.b\""));
        assert_eq!(at("0.5").as_deref(), Some("limits.cpu"));
        assert_eq!(at("\"bind\"").as_deref(), Some("mounts[0].type"));
        assert_eq!(at("\"tmpfs\"").as_deref(), Some("mounts[1].type"));
        assert_eq!(at("1979").as_deref(), Some("health.when"));
        assert_eq!(key_at(DOC, 0).as_deref(), Some("command"));
        assert_eq!(at("[limits]").as_deref(), Some("limits"));
        assert_eq!(at("[[mounts]]").as_deref(), Some("mounts"));
        assert_eq!(key_at("a = 1\n  [x.y]\nz = 1\n", 8).as_deref(), Some("x.y"));
        assert_eq!(key_at("a = [\n[1]]\n", 6).as_deref(), Some("a"));
    }

    #[test]
    fn positions() {
        assert_eq!(line_col("a\nbc", 0), (1, 1));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
        assert_eq!(line_col("éx", 2), (1, 2));
    }

    #[test]
    fn toml_messages_are_never_empty() {
        assert_eq!(toml_message("a = [1,", "invalid array\nexpected `]`\n", Some(7)), "invalid array, expected `]`");
        assert_eq!(toml_message("\r\u{a1}", "", Some(0)), "TOML syntax error at '\\r'");
        assert!(toml_message("rootfs =", "", Some(8)).contains("ends where a value"));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}

//! Reading a TOML document key by key while collecting every problem, each
//! with its place: the checks in [`super::check`] ask for typed values here
//! and carry on past a bad one, so one pass names all the mistakes.

use super::Problem;
use std::ops::Range;
use toml_edit::{Item, TableLike, Value};

/// The source, its text, and what is wrong so far.
pub(super) struct Walk<'a> {
    text: &'a str,
    source: &'a str,
    pub(super) problems: Vec<Problem>,
}

/// A table and where it is, for problems about keys it lacks.
#[derive(Clone, Copy)]
pub(super) struct At<'t> {
    pub(super) table: &'t dyn TableLike,
    /// Where the table starts.
    pub(super) span: Option<usize>,
    pub(super) path: &'t str,
}

impl At<'_> {
    /// The table's place, for a problem about the whole table.
    pub(super) fn range(&self) -> Option<Range<usize>> {
        self.span.map(|s| s..s)
    }
}

impl<'a> Walk<'a> {
    pub(super) fn new(text: &'a str, source: &'a str) -> Walk<'a> {
        Walk { text, source, problems: Vec::new() }
    }

    /// Records a problem at a byte span (or the start of the file).
    pub(super) fn problem(&mut self, span: Option<Range<usize>>, key: &str, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.map_or(0, |s| s.start));
        self.problems.push(Problem {
            source: self.source.to_string(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Names every key of `at` that is not in `known`, with a "did you mean".
    pub(super) fn known_keys(&mut self, at: At<'_>, known: &[&str]) {
        for (key, _) in at.table.iter() {
            if known.contains(&key) {
                continue;
            }
            let span = at.table.key(key).and_then(|k| k.span());
            let hint = match closest(key, known) {
                Some(k) => format!(" (did you mean {k:?}?)"),
                None => format!(" (known keys: {})", known.join(", ")),
            };
            self.problem(span, &join(at.path, key), format!("unknown key{hint}"));
        }
    }

    /// The table under `key`, inline or not; a problem if it is something else.
    pub(super) fn table<'t>(&mut self, at: At<'t>, key: &str, path: &'t str) -> Option<At<'t>> {
        let item = at.table.get(key)?;
        match item.as_table_like() {
            Some(t) => Some(At { table: t, span: span_of(item).map(|s| s.start), path }),
            None => {
                self.problem(span_of(item), path, format!("expected a table, found {}", kind(item)));
                None
            }
        }
    }

    /// The tables of an array of tables (`[[x]]` or `x = [{..}]`), each with its path.
    pub(super) fn tables<'t>(&mut self, at: At<'t>, key: &str) -> Vec<(String, &'t dyn TableLike, Option<Range<usize>>)> {
        let path = join(at.path, key);
        let Some(item) = at.table.get(key) else { return Vec::new() };
        match item {
            Item::ArrayOfTables(a) => {
                a.iter().enumerate().map(|(i, t)| (format!("{path}[{i}]"), t as &dyn TableLike, t.span())).collect()
            }
            Item::Value(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    match v.as_inline_table() {
                        Some(t) => out.push((format!("{path}[{i}]"), t as &dyn TableLike, v.span())),
                        None => self.problem(v.span(), &format!("{path}[{i}]"), format!("expected a table, found {}", value_kind(v))),
                    }
                }
                out
            }
            other => {
                self.problem(span_of(other), &path, format!("expected an array of tables, found {}", kind(other)));
                Vec::new()
            }
        }
    }

    fn value<'t>(&mut self, at: At<'t>, key: &str) -> Option<(&'t Value, String)> {
        let item = at.table.get(key)?;
        let path = join(at.path, key);
        match item.as_value() {
            Some(v) => Some((v, path)),
            None => {
                self.problem(span_of(item), &path, format!("expected a value, found {}", kind(item)));
                None
            }
        }
    }

    pub(super) fn string(&mut self, at: At<'_>, key: &str) -> Option<(String, Option<Range<usize>>, String)> {
        let (v, path) = self.value(at, key)?;
        match v.as_str() {
            Some(s) => Some((s.to_string(), v.span(), path)),
            None => {
                self.problem(v.span(), &path, format!("expected a string, found {}", value_kind(v)));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, at: At<'_>, key: &str) -> Option<bool> {
        let (v, path) = self.value(at, key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.problem(v.span(), &path, format!("expected true or false, found {}", value_kind(v)));
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub(super) fn integer(&mut self, at: At<'_>, key: &str, min: i64, max: i64) -> Option<i64> {
        let (v, path) = self.value(at, key)?;
        match v.as_integer() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.problem(v.span(), &path, format!("{n} is out of range ({min} to {max})"));
                None
            }
            None => {
                self.problem(v.span(), &path, format!("expected a whole number from {min} to {max}, found {}", value_kind(v)));
                None
            }
        }
    }

    /// An array of strings, each with its span and path.
    pub(super) fn strings(&mut self, at: At<'_>, key: &str) -> Vec<(String, Option<Range<usize>>, String)> {
        let Some((v, path)) = self.value(at, key) else { return Vec::new() };
        let Some(a) = v.as_array() else {
            self.problem(v.span(), &path, format!("expected an array of strings, found {}", value_kind(v)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in a.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match item.as_str() {
                Some(s) => out.push((s.to_string(), item.span(), p)),
                None => self.problem(item.span(), &p, format!("expected a string, found {}", value_kind(item))),
            }
        }
        out
    }

    /// One of `allowed`, by name.
    pub(super) fn choice(&mut self, at: At<'_>, key: &str, allowed: &[&str]) -> Option<String> {
        let (s, span, path) = self.string(at, key)?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let hint = closest(&s, allowed).map_or(String::new(), |c| format!("did you mean {c:?}? "));
        self.problem(span, &path, format!("{s:?} is not allowed ({hint}allowed: {})", allowed.join(", ")));
        None
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    let key = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn span_of(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::None => None,
        Item::Value(v) => v.span(),
        Item::Table(t) => t.span(),
        Item::ArrayOfTables(a) => a.span(),
    }
}

fn kind(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => value_kind(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "a whole number",
        Value::Float(_) => "a fractional number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The known word nearest to `word`, if it is near enough to be a typo.
pub(super) fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, case-insensitive.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

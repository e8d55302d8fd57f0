//! Maps configuration problems back to the file: from a key path to its line and column, and
//! from a parse error's byte span to the key it sits in.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::Problem;

/// 1-based (line, column) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Splits `session.tools[0].name` into `session`, `tools`, `[0]`, `name`.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Step::Index(i));
            }
        }
    }
    out
}

/// Where `path` is written in `text`: the value's position, or the deepest enclosing key that
/// exists when the key itself is absent (a missing key inside a present table).
pub fn position_of_key(text: &str, path: &str) -> Option<(usize, usize)> {
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable = root.get_ref();
    let mut value: Option<&Spanned<DeValue>> = None;
    let mut best: Option<usize> = None;
    for step in steps(path) {
        let next = match (step, value.map(|v| v.get_ref())) {
            (Step::Key(k), None) | (Step::Key(k), Some(DeValue::Table(_))) => {
                if let Some(DeValue::Table(t)) = value.map(|v| v.get_ref()) {
                    table = t;
                }
                table
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == k)
                    .map(|(key, v)| {
                        best = Some(key.span().start);
                        v
                    })
            }
            (Step::Index(i), Some(DeValue::Array(a))) => a.get(i),
            _ => None,
        };
        match next {
            Some(v) => {
                value = Some(v);
                if !matches!(v.get_ref(), DeValue::Table(_)) {
                    best = Some(v.span().start);
                }
            }
            None => break,
        }
    }
    best.map(|offset| line_col(text, offset))
}

/// The dotted path of the innermost key whose key or value contains `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    search_table(root.get_ref(), offset, "")
}

fn contains(span: std::ops::Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end
}

// A table opened by a `[header]` has a span that does not cover its body, so every table is
// searched rather than only those whose span contains the offset.
fn search_table(table: &DeTable, offset: usize, prefix: &str) -> Option<String> {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        match value.get_ref() {
            DeValue::Table(t) => {
                if let Some(found) = search_table(t, offset, &path) {
                    return Some(found);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    if let DeValue::Table(t) = item.get_ref() {
                        if let Some(found) = search_table(t, offset, &item_path) {
                            return Some(found);
                        }
                    } else if contains(item.span(), offset) {
                        return Some(path);
                    }
                }
            }
            _ => {}
        }
        if contains(key.span(), offset) || contains(value.span(), offset) {
            return Some(path);
        }
    }
    None
}

/// Keys whose values are secrets: serde quotes the offending value in its messages.
fn is_secret_key(key: &str) -> bool {
    key.ends_with(".credential")
        || key.starts_with("api.token_url_headers")
        || key.starts_with("api.session_url_headers")
}

/// Drops `quoted` parts of a message (serde puts the offending value there).
fn without_values(message: &str) -> String {
    let mut out = String::new();
    for (i, part) in message.split('`').enumerate() {
        out.push_str(if i % 2 == 0 { part } else { "…" });
    }
    out
}

/// Turns a toml/serde error (syntax, unknown key, wrong type) into a located [`Problem`].
pub fn problem_from_toml_error(text: &str, err: &toml::de::Error) -> Problem {
    let message = err.message().trim().replace('\n', " ");
    let span = err.span();
    let key = span
        .as_ref()
        .and_then(|s| key_at(text, s.start))
        .unwrap_or_default();
    let message = if is_secret_key(&key) {
        without_values(&message)
    } else {
        message
    };
    Problem {
        key,
        position: span.map(|s| line_col(text, s.start)),
        message,
    }
}

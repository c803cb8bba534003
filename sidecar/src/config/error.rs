//! Configuration errors and the one place they become text: one line that
//! names the field, with every control character escaped, so a value from
//! the file (or the TOML parser's echo of it) never reaches the terminal raw.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A configuration error: the field's path and what is wrong with it.
#[derive(Debug)]
pub enum ConfigError {
    /// The file cannot be read.
    Read { path: PathBuf, source: std::io::Error },
    /// The TOML parser refused the text: where (1-based line and column),
    /// the key path there when one can be told, and the parser's message.
    Parse { at: Option<(usize, usize)>, field: Option<String>, message: String },
    /// Validation failed.
    Invalid { field: String, message: String },
}

impl ConfigError {
    pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    /// The TOML parser's error, on one line: `line L, column C: <key path>: <message>`.
    pub(super) fn from_toml(text: &str, error: &toml::de::Error) -> Self {
        let message = one_line(error.message());
        let Some(span) = error.span() else { return Self::Parse { at: None, field: None, message } };
        Self::Parse { at: Some(line_column(text, span.start)), field: field_at(text, &span), message }
    }

    /// `<file>: <error>`, escaped like the error itself: what the command
    /// prints after `proxy-acme: `.
    pub fn in_file(&self, path: &Path) -> String {
        escape_controls(&format!("{}: {self}", path.display())).into_owned()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Read { path, source } => format!("cannot read {}: {source}", path.display()),
            Self::Parse { at, field, message } => {
                let at = at.map(|(line, column)| format!("line {line}, column {column}: ")).unwrap_or_default();
                let field = field.as_ref().map(|field| format!("{field}: ")).unwrap_or_default();
                format!("{at}{field}{message}")
            }
            Self::Invalid { field, message } => format!("{field}: {message}"),
        };
        f.write_str(&escape_controls(&text))
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Parse { .. } | Self::Invalid { .. } => None,
        }
    }
}

/// Replaces control characters (ESC, BEL, NUL, newlines, DEL, C1) and the
/// bidirectional overrides that reorder what a terminal shows with `\u{..}`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The parser's message without its line breaks.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// The key path (`certificates[0].domains[1]`) of the deepest key or value
/// whose span holds the error's start, when the text parses as TOML.
fn field_at(text: &str, span: &Range<usize>) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    find_in_table(document.get_ref(), span.start, "")
}

fn find_in_table(table: &DeTable<'_>, at: usize, path: &str) -> Option<String> {
    for (key, value) in table {
        let name: &str = key.get_ref();
        let bare = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let segment = if bare { name.to_owned() } else { format!("{name:?}") };
        let path = if path.is_empty() { segment } else { format!("{path}.{segment}") };
        let here = holds(&key.span(), at) || holds(&value.span(), at);
        match find_in_value(value, at, &path) {
            Some(deeper) => return Some(deeper),
            None if here => return Some(path),
            None => {}
        }
    }
    None
}

fn find_in_value(value: &Spanned<DeValue<'_>>, at: usize, path: &str) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(table) => find_in_table(table, at, path),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let path = format!("{path}[{i}]");
            find_in_value(item, at, &path).or_else(|| holds(&item.span(), at).then_some(path))
        }),
        _ => None,
    }
}

fn holds(span: &Range<usize>, at: usize) -> bool {
    span.start <= at && at < span.end.max(span.start + 1)
}

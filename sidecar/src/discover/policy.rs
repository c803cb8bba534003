//! Which discovered names may be ordered: allow and deny lists of exact
//! names, suffixes and regular expressions, applied before anything is
//! ordered. Deny wins; an empty allow list allows every name not denied.

use regex::Regex;

/// One allow or deny entry.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// `a.example.com`: that name only.
    Exact(String),
    /// `.example.com`: every name under example.com (not example.com).
    Suffix(String),
    /// `~^api-[0-9]+\.example\.com$`: a regular expression on the whole name.
    Regex(Regex),
}

/// An entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{pattern}': {why}")]
pub struct PatternError {
    pub pattern: String,
    pub why: String,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let error = |why: String| PatternError { pattern: text.to_owned(), why };
        if let Some(re) = text.strip_prefix('~') {
            return Regex::new(re).map(Self::Regex).map_err(|e| error(e.to_string()));
        }
        if text.is_empty() || text.bytes().any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace()) {
            return Err(error("use lower-case names, `.suffix` or `~regex`".into()));
        }
        Ok(match text.strip_prefix('.') {
            Some(suffix) if !suffix.is_empty() => Self::Suffix(format!(".{suffix}")),
            Some(_) => return Err(error("a suffix needs a domain after the dot".into())),
            None => Self::Exact(text.to_owned()),
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => name == exact,
            Self::Suffix(suffix) => name.ends_with(suffix.as_str()),
            Self::Regex(re) => re.is_match(name),
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Exact(s) | Self::Suffix(s) => s.clone(),
            Self::Regex(re) => format!("~{}", re.as_str()),
        }
    }
}

/// What may be ordered.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow: Vec<Pattern>,
    pub deny: Vec<Pattern>,
    /// IP addresses may be ordered (RFC 8738).
    pub ip_addresses: bool,
    /// Wildcards may be ordered (the resolver has DNS-01).
    pub wildcards: bool,
}

impl Policy {
    /// `Ok` when `name` may be ordered, else why not.
    pub fn admits(&self, name: &str) -> Result<(), String> {
        if let Some(p) = self.deny.iter().find(|p| p.matches(name)) {
            return Err(format!("denied by '{}'", p.text()));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| p.matches(name)) {
            return Err("not on the allow list".into());
        }
        Ok(())
    }
}

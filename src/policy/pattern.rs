//! `match` path patterns: `/catalog/{entity}`, `/teams/{team}/{rest=**}`,
//! `/{path=**}/logs/{log}`, parsed into segments.

use std::fmt;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this id.
    Literal(String),
    /// `{name}`: matches any one id and binds it.
    Wildcard(String),
    /// `{name=**}`: matches zero or more segments and binds them as a path.
    Recursive(String),
}

/// A parsed `match` pattern. At most one segment is recursive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub segments: Vec<Segment>,
}

/// Why a `match` value is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must start with `/`")]
    MissingLeadingSlash,
    #[error("names no segment")]
    Empty,
    #[error("has an empty segment (`//` or a trailing `/`)")]
    EmptySegment,
    #[error("segment `{0}` is not a valid wildcard (write `{{name}}` or `{{name=**}}`)")]
    BadWildcard(String),
    #[error("segment `{0}` contains a character not allowed in a literal id (`{{`, `}}`, `*`)")]
    BadLiteral(String),
    #[error("wildcard name `{0}` is used twice")]
    DuplicateBinding(String),
    #[error("has more than one recursive wildcard")]
    SecondRecursive,
    #[error(
        "names a collection (odd number of segments); a pattern names documents, \
         e.g. add `/{{doc}}`"
    )]
    CollectionParity,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let rest = text
            .strip_prefix('/')
            .ok_or(PatternError::MissingLeadingSlash)?;
        if rest.is_empty() {
            return Err(PatternError::Empty);
        }
        let mut segments = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut recursive = false;
        for raw in rest.split('/') {
            let segment = parse_segment(raw)?;
            let name = match &segment {
                Segment::Literal(_) => None,
                Segment::Wildcard(n) => Some(n.clone()),
                Segment::Recursive(n) => {
                    if recursive {
                        return Err(PatternError::SecondRecursive);
                    }
                    recursive = true;
                    Some(n.clone())
                }
            };
            if let Some(name) = name {
                if names.contains(&name) {
                    return Err(PatternError::DuplicateBinding(name));
                }
                names.push(name);
            }
            segments.push(segment);
        }
        // Without a recursive wildcard the length is fixed, and documents
        // always sit at an even depth: an odd pattern could never match.
        if !recursive && segments.len() % 2 == 1 {
            return Err(PatternError::CollectionParity);
        }
        Ok(Pattern { segments })
    }

    /// The names this pattern binds, in order.
    pub fn bindings(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Literal(_) => None,
            Segment::Wildcard(n) | Segment::Recursive(n) => Some(n.as_str()),
        })
    }

    /// The names of its single-segment wildcards.
    pub fn single_bindings(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Wildcard(n) => Some(n.as_str()),
            _ => None,
        })
    }
}

fn parse_segment(raw: &str) -> Result<Segment, PatternError> {
    if raw.is_empty() {
        return Err(PatternError::EmptySegment);
    }
    if let Some(inner) = raw.strip_prefix('{') {
        let inner = inner
            .strip_suffix('}')
            .ok_or_else(|| PatternError::BadWildcard(raw.to_string()))?;
        let (name, recursive) = match inner.strip_suffix("=**") {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if !is_identifier(name) {
            return Err(PatternError::BadWildcard(raw.to_string()));
        }
        return Ok(if recursive {
            Segment::Recursive(name.to_string())
        } else {
            Segment::Wildcard(name.to_string())
        });
    }
    if raw.contains(['{', '}', '*']) {
        return Err(PatternError::BadLiteral(raw.to_string()));
    }
    Ok(Segment::Literal(raw.to_string()))
}

/// A wildcard name must be usable as `path.<name>` in a CEL condition.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.segments {
            match s {
                Segment::Literal(l) => write!(f, "/{l}")?,
                Segment::Wildcard(n) => write!(f, "/{{{n}}}")?,
                Segment::Recursive(n) => write!(f, "/{{{n}=**}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_wildcards_and_recursion() {
        let p = Pattern::parse("/teams/{team}/{rest=**}").unwrap();
        assert_eq!(
            p.segments,
            vec![
                Segment::Literal("teams".into()),
                Segment::Wildcard("team".into()),
                Segment::Recursive("rest".into()),
            ]
        );
        assert_eq!(p.bindings().collect::<Vec<_>>(), vec!["team", "rest"]);
        assert_eq!(p.to_string(), "/teams/{team}/{rest=**}");
    }

    #[test]
    fn collection_group_pattern_is_valid() {
        let p = Pattern::parse("/{path=**}/logs/{log}").unwrap();
        assert_eq!(p.segments.len(), 3);
    }

    #[test]
    fn rejects_malformed_patterns() {
        let cases = [
            ("catalog/{e}", PatternError::MissingLeadingSlash),
            ("/", PatternError::Empty),
            ("/catalog//{e}", PatternError::EmptySegment),
            ("/catalog/{e}/", PatternError::EmptySegment),
            ("/catalog/{e", PatternError::BadWildcard("{e".into())),
            ("/catalog/{1e}", PatternError::BadWildcard("{1e}".into())),
            ("/catalog/{e=*}", PatternError::BadWildcard("{e=*}".into())),
            ("/cat*/{e}", PatternError::BadLiteral("cat*".into())),
            ("/a/{x}/b/{x}", PatternError::DuplicateBinding("x".into())),
            ("/{a=**}/b/{c=**}", PatternError::SecondRecursive),
            ("/catalog", PatternError::CollectionParity),
            ("/teams/{team}/deployments", PatternError::CollectionParity),
        ];
        for (text, want) in cases {
            assert_eq!(Pattern::parse(text), Err(want), "{text}");
        }
    }
}

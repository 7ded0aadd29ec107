//! The policy file format as written: raw YAML rules, read with every
//! problem reported by file and line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One policy file: `rules:` and `requestable:` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub requestable: Vec<super::requestable::RawRequestable>,
}

/// One rule, exactly as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Option<Vec<String>>,
    #[serde(default)]
    pub who: Option<RawWho>,
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub database: Option<String>,
    /// The service account the allowed request runs as upstream.
    #[serde(default, rename = "as")]
    pub upstream_account: Option<String>,
    /// `shadow`: evaluated and audited, never deciding.
    #[serde(default)]
    pub mode: RawMode,
    /// Field paths an allow rule hides from the reads it allows.
    #[serde(default)]
    pub mask: Option<Vec<String>>,
}

/// Whether a rule decides (`enforce`, the default) or is only watched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    #[default]
    Enforce,
    Shadow,
}

/// The `who:` selector as written. Keys combine with AND; list entries with OR.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWho {
    pub authenticated: Option<bool>,
    pub any: Option<bool>,
    pub issuers: Option<Vec<String>>,
    pub subjects: Option<Vec<String>>,
    pub emails: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub claims: Option<BTreeMap<String, RawClaim>>,
    /// Bound to the Backstage catalog (`owner_of` or `member_of`).
    pub catalog: Option<RawCatalogWho>,
}

/// `catalog: {owner_of: "component:default/{service}"}` or
/// `catalog: {member_of: "group:default/{team}"}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalogWho {
    pub owner_of: Option<String>,
    pub member_of: Option<String>,
}

/// `claims: { team: payments }` (equals) or `claims: { roles: { contains: admin } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawClaim {
    Contains { contains: serde_json::Value },
    Equals(serde_json::Value),
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found while loading a policy table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// A parsed file with what is needed to point at its lines.
pub struct Source {
    pub name: String,
    pub text: String,
    pub file: RawFile,
}

impl Source {
    /// Parse `text`; a YAML or shape error (unknown key, wrong type) is
    /// returned with its line.
    pub fn parse(name: &str, text: String) -> Result<Source, PolicyError> {
        let file = if text.trim().is_empty() {
            RawFile {
                rules: Vec::new(),
                requestable: Vec::new(),
            }
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| PolicyError {
                file: name.to_string(),
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            })?
        };
        Ok(Source {
            name: name.to_string(),
            text,
            file,
        })
    }

    /// An error about rule `index`, pointing at its `key:` line when found,
    /// else at the rule's first line.
    pub fn error(&self, index: usize, key: Option<&str>, message: String) -> PolicyError {
        PolicyError {
            file: self.name.clone(),
            line: rule_line(&self.text, index, key),
            message,
        }
    }
}

/// The policy files of `dir`: `*.yaml` and `*.yml`, not `*.test.yaml`,
/// sorted by name (the table's order).
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_policy_file(p))
        .collect();
    files.sort();
    Ok(files)
}

pub fn is_policy_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !is_test_file(path)
}

pub fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

/// Read and parse every policy file of `dir`, collecting every error.
pub fn read_dir(dir: &Path) -> Result<Vec<Source>, PolicyErrors> {
    let files = policy_files(dir).map_err(|e| {
        PolicyErrors(vec![PolicyError {
            file: dir.display().to_string(),
            line: None,
            message: format!("cannot read the policy directory: {e}"),
        }])
    })?;
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| PolicyError {
                file: name.clone(),
                line: None,
                message: format!("cannot read: {e}"),
            })
            .and_then(|text| Source::parse(&name, text));
        match parsed {
            Ok(source) => sources.push(source),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(PolicyErrors(errors))
    }
}

/// The 1-based line of rule `index` (or of its `key:`), found from the
/// block-sequence layout; YAML parsers do not keep positions past parsing.
fn rule_line(text: &str, index: usize, key: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let items: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .filter_map(|(n, line)| {
            let trimmed = line.trim_start();
            (trimmed == "-" || trimmed.starts_with("- ")).then(|| (n, line.len() - trimmed.len()))
        })
        .collect();
    let indent = items.iter().map(|&(_, i)| i).min()?;
    let starts: Vec<usize> = items
        .iter()
        .filter(|&&(_, i)| i == indent)
        .map(|&(n, _)| n)
        .collect();
    let start = *starts.get(index)?;
    let end = starts.get(index + 1).copied().unwrap_or(lines.len());
    let found = key.and_then(|key| {
        (start..end).find(|&n| {
            let trimmed = lines[n].trim_start();
            let trimmed = trimmed.strip_prefix("- ").unwrap_or(trimmed).trim_start();
            trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
    });
    Some(found.unwrap_or(start) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
rules:
  - id: one
    match: /a/{b}
    allow:
      - read
  - id: two
    match: /c/{d}
    deny: [write]
";

    #[test]
    fn finds_rule_and_key_lines() {
        assert_eq!(rule_line(TEXT, 0, None), Some(3));
        assert_eq!(rule_line(TEXT, 1, None), Some(7));
        assert_eq!(rule_line(TEXT, 1, Some("match")), Some(8));
        assert_eq!(rule_line(TEXT, 0, Some("allow")), Some(5));
        assert_eq!(rule_line(TEXT, 0, Some("id")), Some(3));
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let text = "rules:\n  - id: x\n    match: /a/{b}\n    alow: [read]\n".to_string();
        let err = Source::parse("p.yaml", text).err().unwrap();
        assert!(
            err.message.contains("unknown field `alow`"),
            "{}",
            err.message
        );
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn claims_equal_or_contain() {
        let text = "rules:\n  - id: x\n    match: /a/{b}\n    who:\n      claims: { team: a, roles: { contains: admin } }\n".to_string();
        let source = Source::parse("p.yaml", text).unwrap();
        let who = source.file.rules[0].who.as_ref().unwrap();
        let claims = who.claims.as_ref().unwrap();
        assert!(matches!(claims["team"], RawClaim::Equals(_)));
        assert!(matches!(claims["roles"], RawClaim::Contains { .. }));
    }
}

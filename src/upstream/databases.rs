//! `upstream.databases`: the Firestore databases firegate fronts. A rule
//! without `database:` matches every database, so without this pin a
//! caller could reach any project firegate's service account can.

use crate::config::errors::ConfigErrors;
use crate::model::Database;

const KEY: &str = "upstream.databases";
const EXAMPLE: &str = "projects/my-project/databases/(default)";

/// The validated list; never empty once a config is built.
pub fn validate(names: &[String], errors: &mut ConfigErrors) -> Vec<Database> {
    if names.is_empty() {
        errors.push(
            KEY,
            format!(
                "required: the full names of the databases firegate fronts, e.g. [{EXAMPLE}]; \
                 requests for any other database are refused (`firegate dev` fills this in)"
            ),
        );
    }
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let parsed = parse(name);
            if parsed.is_none() {
                errors.push(
                    format!("{KEY}[{i}]"),
                    format!("`{name}` is not a database name like {EXAMPLE}"),
                );
            }
            parsed
        })
        .collect()
}

/// `projects/P/databases/D`, with plain ids (as they read once decoded).
fn parse(name: &str) -> Option<Database> {
    let plain = |id: &str| {
        !id.is_empty() && id.len() <= 1500 && !id.chars().any(|c| c.is_control() || c == '/')
    };
    let mut parts = name.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("projects"), Some(project), Some("databases"), Some(database), None)
            if plain(project) && plain(database) =>
        {
            Some(Database {
                project: project.to_owned(),
                database: database.to_owned(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(names: &[&str]) -> Result<Vec<Database>, Vec<String>> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        ConfigErrors::collect(|errors| validate(&names, errors))
            .map_err(|e| e.errors.into_iter().map(|e| e.key).collect())
    }

    #[test]
    fn full_names_are_read_and_anything_else_is_explained() {
        let dbs = check(&[
            "projects/p/databases/(default)",
            "projects/q/databases/logs",
        ])
        .expect("valid");
        assert_eq!(dbs[1].to_string(), "projects/q/databases/logs");
        assert_eq!(check(&[]).unwrap_err(), ["upstream.databases"]);
        assert_eq!(
            check(&[
                "projects/p",
                "p/(default)",
                "projects/p/databases/d/documents",
                "projects//databases/d"
            ])
            .unwrap_err(),
            [
                "upstream.databases[0]",
                "upstream.databases[1]",
                "upstream.databases[2]",
                "upstream.databases[3]"
            ]
        );
    }
}

//! `firegate policy check`: classify one request as the proxy would and
//! explain the decision, naming the rule that made it.

use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Uri, header};
use serde::Serialize;

use super::documents::{self, GivenDocuments};
use super::principal::PrincipalSpec;
use crate::authn::Principal;
use crate::firestore::{self};
use crate::model::Operation;
use crate::policy::{CatalogSeen, DataSeen, Decision, Table};

/// Classify an HTTP request the way the proxy does.
pub fn classify_request(method: &str, url: &str, body: Option<Bytes>) -> Result<Operation, String> {
    let method = HttpMethod::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let route = firestore::route(&method, &uri, &headers)
        .map_err(|e| format!("request not classified ({}): {e}", e.reason()))?;
    let body = route.needs_body().then(|| body.unwrap_or_default());
    firestore::classify(&route, body.as_ref())
        .map_err(|e| format!("request not classified ({}): {e}", e.reason()))
}

#[derive(Serialize)]
struct CheckOutput<'a> {
    operation: &'a Operation,
    decision: &'a Decision,
    /// For each target a data condition decided: what it read, and saw.
    #[serde(skip_serializing_if = "<[DataSeen]>::is_empty")]
    data: &'a [DataSeen],
    /// With `--catalog`: the snapshot and the catalog-bound rules that
    /// covered each target.
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog: Option<CatalogOutput>,
}

#[derive(Serialize)]
struct CatalogOutput {
    entities: usize,
    /// Seconds since the snapshot was written.
    index_age_seconds: Option<u64>,
    rules: Vec<CatalogSeen>,
}

/// What `policy check` judges against, besides the request: the stored
/// documents, a catalog snapshot and the caller's active grants.
#[derive(Default)]
pub struct Given<'a> {
    pub stored_file: Option<&'a Path>,
    pub catalog_file: Option<&'a Path>,
    /// `PATH=ACTIONS`, each checked as the server checks a request.
    pub grants: &'a [String],
}

/// `policy check`: the decision as pretty JSON, and whether it allowed.
pub fn check(
    policies: &Path,
    principal_file: &Path,
    method: &str,
    url: &str,
    body_file: Option<&Path>,
    Given {
        stored_file,
        catalog_file,
        grants,
    }: Given<'_>,
) -> anyhow::Result<(String, bool)> {
    let table = Table::from_dir(policies, 1)
        .map_err(|e| anyhow::anyhow!("invalid policy in {}:\n{e}", policies.display()))?;
    let text = std::fs::read_to_string(principal_file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", principal_file.display()))?;
    let spec: PrincipalSpec = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", principal_file.display()))?;
    let body = body_file
        .map(|f| std::fs::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display())))
        .transpose()?
        .map(Bytes::from);
    let op = classify_request(method, url, body).map_err(anyhow::Error::msg)?;
    let given: GivenDocuments = match stored_file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
        }
        None => GivenDocuments::new(),
    };
    let snapshot = catalog_file.map(super::catalog::load).transpose()?;
    let principal = spec.principal();
    let specs = grants
        .iter()
        .map(|g| {
            let (path, actions) = g
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--grant `{g}`: write PATH=ACTIONS"))?;
            Ok((
                path.to_string(),
                actions.split(',').map(String::from).collect(),
            ))
        })
        .collect::<anyhow::Result<Vec<(String, Vec<String>)>>>()?;
    let grants = super::cases::grants_of(
        &table,
        &principal,
        &op.database,
        &specs,
        snapshot.as_ref().map(|s| &s.view),
    )
    .map_err(anyhow::Error::msg)?;
    explain_with(
        &table,
        &principal,
        op,
        &given,
        snapshot.as_ref(),
        grants.as_ref(),
    )
    .map_err(anyhow::Error::msg)
}

/// The `policy check` output for an already classified operation.
pub fn explain(table: &Table, principal: &Principal, op: &Operation) -> (String, bool) {
    explain_with(
        table,
        principal,
        op.clone(),
        &GivenDocuments::new(),
        None,
        None,
    )
    .unwrap_or_else(|e| (e, false))
}

/// [`explain`], with the stored documents the proxy would read (one not
/// given is absent), as `policy test` judges them.
fn explain_with(
    table: &Table,
    principal: &Principal,
    mut op: Operation,
    given: &GivenDocuments,
    snapshot: Option<&super::catalog::Snapshot>,
    grants: Option<&crate::policy::grants::PrincipalGrants>,
) -> Result<(String, bool), String> {
    let needed = table.stored_needed(principal, &op);
    let stored = documents::stored(given, &needed)?;
    if !needed.is_empty() {
        op.settle(&stored);
    }
    let view = snapshot.map(|s| &s.view);
    let decision = table.decide_with(
        &crate::policy::Request::with_stored(principal, &op, &stored)
            .with_catalog(view)
            .granted(grants),
    );
    let data = table.explain_data(principal, &op, &stored, &decision);
    let catalog = snapshot.map(|s| CatalogOutput {
        entities: s.view.index.stats().entities,
        index_age_seconds: s.age.map(|a| a.as_secs()),
        rules: table.explain_catalog(principal, &decision, &s.view),
    });
    let output = CheckOutput {
        operation: &op,
        decision: &decision,
        data: &data,
        catalog,
    };
    let json = serde_json::to_string_pretty(&output).unwrap_or_default();
    Ok((json, decision.allowed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::cases::tests::POLICY;
    use crate::model::{Access, Method};
    use crate::policy::fixtures::{doc, op};

    #[test]
    fn explain_names_the_rule_per_target() {
        let table = Table::from_yaml(POLICY, 1).unwrap();
        let eng = PrincipalSpec {
            issuer: "https://issuer.invalid".into(),
            subject: "e".into(),
            email: None,
            groups: vec!["engineers".into()],
            claims: Default::default(),
        };
        let op = op(
            Method::BatchGet,
            vec![doc("catalog/a", Access::Get), doc("secrets/a", Access::Get)],
        );
        let (json, allowed) = explain(&table, &eng.principal(), &op);
        assert!(!allowed);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let targets = &value["decision"]["targets"];
        assert_eq!(targets[0]["rule"], "catalog-readers");
        assert_eq!(targets[0]["why"], "allowed");
        assert_eq!(targets[1]["why"], "no_rule_matched");
        assert_eq!(value["decision"]["reason"], "no_rule_matched");
        assert_eq!(value["operation"]["method"], "batchGet");
    }

    #[test]
    fn explain_names_the_data_a_condition_read_and_saw() {
        let table = Table::from_yaml(
            "rules:\n  - id: notes-owner\n    match: /notes/{id}\n    allow: [get]\n    \
             who: {authenticated: true}\n    when: \"resource.data.owner == principal.subject\"\n",
            1,
        )
        .unwrap();
        let alice = PrincipalSpec {
            issuer: "https://issuer.invalid".into(),
            subject: "alice".into(),
            email: None,
            groups: Vec::new(),
            claims: Default::default(),
        };
        let op = classify_request(
            "GET",
            "/v1/projects/p/databases/(default)/documents/notes/n1",
            None,
        )
        .unwrap();
        let given: GivenDocuments =
            serde_yaml_ng::from_str("{/notes/n1: {owner: bob, title: x}}").unwrap();
        let (json, allowed) =
            explain_with(&table, &alice.principal(), op, &given, None, None).unwrap();
        assert!(!allowed);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let data = &value["data"][0];
        assert_eq!(data["rule"], "notes-owner");
        assert_eq!(data["why"], "condition_false");
        assert_eq!(data["read"][0]["expression"], "resource.data.owner");
        assert_eq!(data["read"][0]["value"], "bob");
        assert!(
            !json.contains("title"),
            "only what the condition read: {json}"
        );
    }

    #[test]
    fn explain_names_the_grant_that_allowed() {
        let table = Table::from_yaml(
            "requestable:\n  - id: ops\n    match: /ops/{rest=**}\n    actions: [write]\n    \
             who: {authenticated: true}\n    approvers: {who: {groups: [admins]}}\n    max_duration: 1h\n",
            1,
        )
        .unwrap();
        let alice = crate::policy::fixtures::member("alice", &[]);
        let op = op(Method::Commit, vec![doc("/ops/a", Access::Update)]);
        let specs = [("/ops/**".to_string(), vec!["update".to_string()])];
        let grants =
            super::super::cases::grants_of(&table, &alice, &op.database, &specs, None).unwrap();
        let (json, allowed) = explain_with(
            &table,
            &alice,
            op.clone(),
            &GivenDocuments::new(),
            None,
            grants.as_ref(),
        )
        .unwrap();
        assert!(allowed, "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let target = &value["decision"]["targets"][0];
        assert_eq!(target["why"], "granted");
        assert_eq!(target["rule"], "ops");
        assert_eq!(target["grant"], "case-grant-0");
        let (_, allowed) =
            explain_with(&table, &alice, op, &GivenDocuments::new(), None, None).unwrap();
        assert!(!allowed, "no grant, no access");
        let outside = [("/other/**".to_string(), vec!["update".to_string()])];
        assert!(
            super::super::cases::grants_of(
                &table,
                &alice,
                &crate::model::Database::new("p", "(default)"),
                &outside,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn malformed_requests_are_reported() {
        let err = classify_request("NOT A METHOD", "/", None).unwrap_err();
        assert!(err.contains("not an HTTP method"), "{err}");
        let err = classify_request("GET", "/with space", None).unwrap_err();
        assert!(err.contains("not a URL"), "{err}");
    }
}

//! The analyses against brute force: generated tables judged by the engine
//! for every generated principal at every generated path.

use proptest::prelude::*;

use super::diff::{Change, FailOn, diff};
use super::region::Piece;
use super::what_can::what_can;
use super::who_can::who_can;
use super::{PathSet, accesses};
use crate::authn::Principal;
use crate::model::{Access, Method, Scope, Target};
use crate::policy::Table;
use crate::policy::decide::Request;
use crate::policy::fixtures::op;
use crate::policy::pattern::Pattern;

const WHO: &[&str] = &[
    "{ any: true }",
    "{ groups: [g1] }",
    "{ groups: [g1, g2] }",
    "{ subjects: [s1] }",
    "{ issuers: [i1], groups: [g2] }",
    "{ emails: [E1@x.com] }",
    "{ claims: { team: a } }",
    "{ claims: { roles: { contains: admin } } }",
];
const ACTIONS: &[&str] = &["[get]", "[create]", "[get, create]", "[read]", "[write]"];
const TESTED: [Access; 2] = [Access::Get, Access::Create];
/// The database the brute force judges in.
const DB: Option<&str> = Some("(default)");

/// A rule as generated: pattern segments, effect, `who`, actions, condition kind.
type Spec = (Vec<usize>, bool, usize, usize, usize);

fn pattern_text(segments: &[usize]) -> Option<String> {
    let mut recursive = false;
    let mut text = String::new();
    for (i, &k) in segments.iter().enumerate() {
        text += &match k {
            0 => "/a".to_string(),
            1 => "/b".to_string(),
            3 if !recursive => {
                recursive = true;
                format!("/{{r{i}=**}}")
            }
            _ => format!("/{{w{i}}}"),
        };
    }
    Pattern::parse(&text).ok().map(|_| text)
}

/// Condition kinds: 0 none, 1 on the principal, 2 on the path, 3 on the access.
fn condition(kind: usize, pattern: &str) -> Option<String> {
    match kind {
        1 => Some("principal.subject == 's1'".into()),
        2 => {
            let p = Pattern::parse(pattern).ok()?;
            let name = p.bindings().next()?.to_string();
            Some(format!("path.{name} == 'a'"))
        }
        3 => Some("request.method == 'get'".into()),
        _ => None,
    }
}

fn table(specs: &[Spec], conditions: bool) -> Table {
    let mut yaml = String::from("rules:\n");
    for (i, (segments, allow, who, actions, cond)) in specs.iter().enumerate() {
        let Some(pattern) = pattern_text(segments) else {
            continue;
        };
        let effect = if *allow { "allow" } else { "deny" };
        yaml += &format!(
            "  - id: r{i}\n    match: \"{pattern}\"\n    {effect}: {}\n    who: {}\n",
            ACTIONS[*actions % ACTIONS.len()],
            WHO[*who % WHO.len()]
        );
        if conditions && let Some(when) = condition(*cond, &pattern) {
            yaml += &format!("    when: \"{when}\"\n");
        }
        // Some rules are about one database: the one judged, or another.
        match (i + actions) % 5 {
            0 => yaml += "    database: \"(default)\"\n",
            1 => yaml += "    database: other\n",
            _ => {}
        }
    }
    match Table::from_yaml(&yaml, 0) {
        Ok(t) => t,
        Err(e) => panic!("{e}\n{yaml}"),
    }
}

fn principals() -> Vec<Principal> {
    let mut out = Vec::new();
    for issuer in ["i1", "i2"] {
        for subject in ["s1", "s2"] {
            for email in [None, Some("e1@X.COM")] {
                for groups in [vec![], vec!["g1"], vec!["g2"], vec!["g1", "g2"]] {
                    for claims in [
                        serde_json::json!({}),
                        serde_json::json!({"team": "a"}),
                        serde_json::json!({"roles": ["admin"]}),
                        serde_json::json!({"team": "b", "roles": ["user"]}),
                    ] {
                        let serde_json::Value::Object(claims) = claims else {
                            unreachable!()
                        };
                        out.push(Principal::new(
                            issuer.into(),
                            subject.into(),
                            email.map(String::from),
                            groups.iter().map(|g| g.to_string()).collect(),
                            claims,
                        ));
                    }
                }
            }
        }
    }
    out
}

fn paths() -> Vec<Vec<String>> {
    let ids = ["a", "b", "c"];
    let mut out = Vec::new();
    for x in ids {
        for y in ids {
            out.push(vec![x.to_string(), y.to_string()]);
            for z in ids {
                for w in ids {
                    out.push([x, y, z, w].iter().map(|s| s.to_string()).collect());
                }
            }
        }
    }
    out
}

fn allowed(t: &Table, p: &Principal, path: &[String], access: Access) -> bool {
    let op = op(Method::Get, Vec::new());
    let target = Target {
        scope: Scope::Document { path: path.into() },
        access,
    };
    t.decide_target(&Request::new(p, &op), &target)
        .decision
        .allowed
}

/// The piece covers the point, its conditions taken as holding and only
/// the unconditional exclusions as applying (what soundness may rely on).
fn may_hold(piece: &Piece, p: &Principal, path: &[String]) -> bool {
    piece.class.matches(p)
        && piece.paths.matches(path)
        && !piece
            .except
            .iter()
            .any(|e| e.conditions.is_empty() && e.class.matches(p) && e.paths.matches(path))
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(0usize..4, 1..5),
            any::<bool>(),
            0usize..WHO.len(),
            0usize..ACTIONS.len(),
            0usize..4,
        ),
        1..7,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn who_can_is_exact_without_conditions_and_sound_with(
        specs in specs(),
        query in proptest::collection::vec(0usize..4, 1..4),
        conditions in any::<bool>(),
    ) {
        let t = table(&specs, conditions);
        let query = match pattern_text(&query) {
            Some(q) => PathSet::of(&Pattern::parse(&q).unwrap()),
            None => PathSet::everything(),
        };
        let answer = who_can(&t, &TESTED, &query, DB);
        for g in &answer.allowed {
            if let (Some((p, path)), None) = (&g.piece.witness, &g.when) {
                prop_assert!(allowed(&t, p, path, g.action) || conditions, "witness of {g:?}");
            }
        }
        for access in TESTED {
            let allows: Vec<_> = answer.allowed.iter().filter(|g| g.action == access).collect();
            let denies: Vec<_> = answer.denied.iter().filter(|g| g.action == access).collect();
            for path in paths().iter().filter(|x| query.matches(x)) {
                for p in &principals() {
                    let truth = allowed(&t, p, path, access);
                    if conditions {
                        if truth {
                            prop_assert!(allows.iter().any(|g| may_hold(&g.piece, p, path)),
                                "{access} {path:?} {p:?} allowed but not reported");
                            prop_assert!(!denies.iter().any(|g| g.when.is_none() && g.piece.holds(p, path)));
                        }
                    } else {
                        let said = allows.iter().any(|g| g.piece.holds(p, path))
                            && !denies.iter().any(|g| g.piece.holds(p, path));
                        prop_assert_eq!(truth, said, "{} {:?} {:?}: {:#?}", access, path, p, answer);
                    }
                }
            }
        }
    }

    #[test]
    fn what_can_is_exact_for_one_principal(specs in specs(), who in 0usize..128, conditions in any::<bool>()) {
        let t = table(&specs, conditions);
        let everyone = principals();
        let p = &everyone[who % everyone.len()];
        let answer = what_can(&t, p, DB);
        for access in TESTED {
            for path in &paths() {
                let truth = allowed(&t, p, path, access);
                let allows = answer.allowed.iter().filter(|g| g.action == access);
                let denies = answer.denied.iter().filter(|g| g.action == access);
                if conditions {
                    if truth {
                        prop_assert!(allows.clone().any(|g| may_hold(&g.piece, p, path)));
                    }
                } else {
                    let said = allows.clone().any(|g| g.piece.holds(p, path))
                        && !denies.clone().any(|g| g.piece.holds(p, path));
                    prop_assert_eq!(truth, said, "{} {:?}: {:#?}", access, path, answer);
                }
            }
        }
    }

    #[test]
    fn diff_is_exact_without_conditions_and_sound_with(
        old in specs(),
        edits in specs(),
        keep in proptest::collection::vec(any::<bool>(), 7),
        conditions in any::<bool>(),
    ) {
        // The new table keeps some old rules and adds others, as a real
        // change does.
        let mut new: Vec<Spec> = old
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(s, _)| s.clone())
            .collect();
        new.extend(edits);
        let (a, b) = (table(&old, conditions), table(&new, conditions));
        let d = diff(&a, &b, DB);
        for c in &d.changes {
            if let (Some((p, path)), None, false) = (&c.piece.witness, &c.when, conditions) {
                let (was, is) = (allowed(&a, p, path, c.action), allowed(&b, p, path, c.action));
                prop_assert_eq!((was, is), (c.change == Change::Lost, c.change == Change::Gained), "witness of {:?}", c);
            }
        }
        for access in TESTED {
            for path in &paths() {
                for p in &principals() {
                    let (was, is) = (allowed(&a, p, path, access), allowed(&b, p, path, access));
                    for (change, happened) in [(Change::Gained, !was && is), (Change::Lost, was && !is)] {
                        let mut entries = d.changes.iter().filter(|c| c.action == access && c.change == change);
                        if conditions {
                            if happened {
                                prop_assert!(entries.any(|c| may_hold(&c.piece, p, path)),
                                    "{change:?} {access} {path:?} {p:?} missed");
                            }
                        } else {
                            let said = entries.any(|c| c.piece.holds(p, path));
                            prop_assert_eq!(happened, said, "{:?} {} {:?} {:?}: {}", change, access, path, p, d.text());
                        }
                    }
                }
            }
        }
        prop_assert_eq!(d.fails(FailOn::Any), !d.changes.is_empty());
    }
}

const SHIPPED_NEW_RULE: &str = "
rules:
  - id: contractors-status
    match: /status/{service}
    allow: [write]
    who: { groups: [group:default/contractors] }
";

fn shipped() -> Table {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    Table::from_dir(&dir, 1).unwrap()
}

#[test]
fn nobody_reads_secrets_and_admins_write_the_rest() {
    let t = shipped();
    let secrets = PathSet::of(&Pattern::parse("/secrets/{x=**}").unwrap());
    let answer = who_can(&t, &accesses("write").unwrap(), &secrets, None);
    assert!(answer.allowed.is_empty(), "{}", answer.text());
    assert!(
        answer
            .denied
            .iter()
            .all(|g| g.rule == "no-secrets" && g.who.is_everyone())
    );
    let team = PathSet::of(&Pattern::parse("/teams/payments/deployments/d1").unwrap());
    let answer = who_can(&t, &[Access::Update], &team, None);
    let rules: Vec<&str> = answer.allowed.iter().map(|g| g.rule.as_str()).collect();
    assert_eq!(rules, ["platform-admins", "own-team"], "{}", answer.text());
    let own = &answer.allowed[1];
    assert_eq!(
        own.when.as_deref(),
        Some("'group:default/' + 'payments' in principal.groups"),
        "the condition is bound to the path"
    );
}

#[test]
fn a_condition_on_the_path_alone_is_settled() {
    let t = Table::from_yaml(
        "rules:\n  - { id: a-only, match: \"/t/{x}\", allow: [get], who: { any: true }, when: \"path.x == 'a'\" }\n",
        0,
    )
    .unwrap();
    let at = |p: &str| {
        who_can(
            &t,
            &[Access::Get],
            &PathSet::of(&Pattern::parse(p).unwrap()),
            None,
        )
    };
    assert_eq!(at("/t/a").allowed.len(), 1);
    assert!(at("/t/a").allowed[0].when.is_none());
    assert!(at("/t/b").allowed.is_empty());
    assert_eq!(
        at("/t/{y}").allowed[0].when.as_deref(),
        Some("path.x == 'a'")
    );
}

#[test]
fn diff_names_gains_with_their_rules() {
    let old = shipped();
    let dir = tempfile::tempdir().unwrap();
    for entry in
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .unwrap()
    {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("contractors.yaml"), SHIPPED_NEW_RULE).unwrap();
    let new = Table::from_dir(dir.path(), 1).unwrap();
    assert!(diff(&old, &old, None).changes.is_empty());
    let d = diff(&old, &new, None);
    assert_eq!(d.changes.len(), 3, "{}", d.text());
    assert!(d.changes.iter().all(|c| c.change == Change::Gained
        && c.rules == ["contractors-status"]
        && c.path == "/status/{service}"));
    assert!(d.fails(FailOn::Gained) && !d.fails(FailOn::Lost));
    let back = diff(&new, &old, None);
    assert!(back.fails(FailOn::Lost) && !back.fails(FailOn::Gained));
}

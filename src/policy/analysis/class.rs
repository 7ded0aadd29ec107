//! Principal classes: the callers a `who:` selector (or the meet of
//! several) selects, with membership, implication and the least-privileged
//! members the analyses test exclusions against.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::paths::FRESH;
use crate::authn::Principal;
use crate::policy::compile::{ClaimTest, Who};

/// What a class requires of one claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClaimNeed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The claim is a list holding each of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<Value>,
}

/// A set of principals: every present key must hold. `None` leaves a key
/// free; a list means one of its entries. `groups` is a list of such
/// lists, each to be met (a meet of two rules asks for both).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Class {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuers: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<BTreeSet<String>>,
    /// Lower-cased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<BTreeSet<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, ClaimNeed>,
}

/// Most least-privileged members tried per class; past it an exclusion is
/// kept rather than proven to cover (never unsound, only verbose).
const MEMBER_LIMIT: usize = 256;

impl Class {
    pub fn of(who: &Who) -> Class {
        let set = |l: &Option<Vec<String>>| l.as_ref().map(|l| l.iter().cloned().collect());
        let mut claims: BTreeMap<String, ClaimNeed> = BTreeMap::new();
        for (name, test) in &who.claims {
            let need = claims.entry(name.clone()).or_default();
            match test {
                ClaimTest::Equals(v) => need.equals = Some(v.clone()),
                ClaimTest::Contains(v) => need.contains.push(v.clone()),
            }
        }
        // A catalog-bound `who` depends on the catalog, which a class
        // cannot see: it stands as a need no principal of the analysis
        // meets (an allow shows with it; a deny never proves an exclusion).
        if let Some(catalog) = &who.catalog {
            claims.insert(
                format!("(catalog {})", catalog.describe()),
                ClaimNeed {
                    equals: Some(Value::Bool(true)),
                    contains: Vec::new(),
                },
            );
        }
        Class {
            issuers: set(&who.issuers),
            subjects: set(&who.subjects),
            emails: set(&who.emails),
            groups: who
                .groups
                .iter()
                .map(|l| l.iter().cloned().collect())
                .collect(),
            claims,
        }
    }

    pub fn is_everyone(&self) -> bool {
        *self == Class::default()
    }

    /// Whether some principal is in the class.
    pub fn is_empty(&self) -> bool {
        [&self.issuers, &self.subjects, &self.emails]
            .iter()
            .any(|l| l.as_ref().is_some_and(BTreeSet::is_empty))
            || self.groups.iter().any(BTreeSet::is_empty)
            || self.claims.values().any(|need| match &need.equals {
                Some(v) => !need
                    .contains
                    .iter()
                    .all(|c| v.as_array().is_some_and(|a| a.contains(c))),
                None => false,
            })
    }

    /// The principals in both classes (`None` when nobody is).
    pub fn meet(&self, other: &Class) -> Option<Class> {
        fn both(
            a: &Option<BTreeSet<String>>,
            b: &Option<BTreeSet<String>>,
        ) -> Option<BTreeSet<String>> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.intersection(b).cloned().collect()),
                (Some(x), None) | (None, Some(x)) => Some(x.clone()),
                (None, None) => None,
            }
        }
        let mut groups = self.groups.clone();
        for g in &other.groups {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        let mut claims = self.claims.clone();
        for (name, need) in &other.claims {
            let mine = claims.entry(name.clone()).or_default();
            match (&mine.equals, &need.equals) {
                (Some(a), Some(b)) if a != b => return None,
                (None, Some(b)) => mine.equals = Some(b.clone()),
                _ => {}
            }
            for c in &need.contains {
                if !mine.contains.contains(c) {
                    mine.contains.push(c.clone());
                }
            }
        }
        let class = Class {
            issuers: both(&self.issuers, &other.issuers),
            subjects: both(&self.subjects, &other.subjects),
            emails: both(&self.emails, &other.emails),
            groups,
            claims,
        };
        (!class.is_empty()).then_some(class)
    }

    /// Same test as the policy engine's `who` matching.
    pub fn matches(&self, p: &Principal) -> bool {
        let any_of =
            |l: &Option<BTreeSet<String>>, v: &str| l.as_ref().is_none_or(|l| l.contains(v));
        any_of(&self.issuers, &p.issuer)
            && any_of(&self.subjects, &p.subject)
            && self.emails.as_ref().is_none_or(|l| {
                p.email
                    .as_deref()
                    .is_some_and(|e| l.contains(&e.to_ascii_lowercase()))
            })
            && self
                .groups
                .iter()
                .all(|l| p.groups.iter().any(|g| l.contains(g)))
            && self.claims.iter().all(|(name, need)| {
                let value = p.claims.get(name);
                need.equals.as_ref().is_none_or(|want| value == Some(want))
                    && need.contains.iter().all(|want| {
                        value
                            .and_then(Value::as_array)
                            .is_some_and(|a| a.contains(want))
                    })
            })
    }

    /// The least-privileged members: each holds only what the class asks
    /// (one entry per list, fresh ids elsewhere, claims with an extra
    /// element so they equal nothing else). Any member of the class is in
    /// every class that one of these is in, for some choice among them.
    pub fn least_members(&self) -> Vec<Principal> {
        let choices = |l: &Option<BTreeSet<String>>| -> Vec<Option<String>> {
            match l {
                Some(l) => l.iter().cloned().map(Some).collect(),
                None => vec![None],
            }
        };
        let mut group_sets: Vec<BTreeSet<String>> = vec![BTreeSet::new()];
        for clause in &self.groups {
            let mut next = Vec::new();
            for set in &group_sets {
                if clause.iter().any(|g| set.contains(g)) {
                    next.push(set.clone());
                    continue;
                }
                for g in clause {
                    let mut s = set.clone();
                    s.insert(g.clone());
                    next.push(s);
                }
            }
            next.sort();
            next.dedup();
            next.truncate(MEMBER_LIMIT);
            group_sets = next;
        }
        let claims: serde_json::Map<String, Value> = self
            .claims
            .iter()
            .map(|(name, need)| {
                let value = need.equals.clone().unwrap_or_else(|| {
                    let mut items = need.contains.clone();
                    items.push(Value::from(FRESH));
                    Value::Array(items)
                });
                (name.clone(), value)
            })
            .collect();
        let mut out = Vec::new();
        for issuer in choices(&self.issuers) {
            for subject in choices(&self.subjects) {
                for email in choices(&self.emails) {
                    for groups in &group_sets {
                        if out.len() >= MEMBER_LIMIT {
                            return out;
                        }
                        out.push(Principal::new(
                            issuer.clone().unwrap_or_else(|| FRESH.into()),
                            subject.clone().unwrap_or_else(|| FRESH.into()),
                            email.clone(),
                            groups.iter().cloned().collect(),
                            claims.clone(),
                        ));
                    }
                }
            }
        }
        out
    }

    /// Is every member of `self` in `other`? Exact for these positive
    /// classes: a least member outside `other` is a counterexample.
    pub fn within(&self, other: &Class) -> bool {
        let members = self.least_members();
        members.len() < MEMBER_LIMIT && members.iter().all(|m| other.matches(m))
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_everyone() {
            return f.write_str("everyone");
        }
        let list = |l: &BTreeSet<String>| {
            let v: Vec<&str> = l.iter().map(String::as_str).collect();
            if v.len() == 1 {
                v[0].to_string()
            } else {
                format!("any of [{}]", v.join(", "))
            }
        };
        let mut parts = Vec::new();
        for (key, l) in [
            ("issuer", &self.issuers),
            ("subject", &self.subjects),
            ("email", &self.emails),
        ] {
            if let Some(l) = l {
                parts.push(format!("{key} {}", list(l)));
            }
        }
        for g in &self.groups {
            parts.push(format!("group {}", list(g)));
        }
        for (name, need) in &self.claims {
            if let Some(v) = &need.equals {
                parts.push(format!("claim {name} = {v}"));
            }
            for c in &need.contains {
                parts.push(format!("claim {name} contains {c}"));
            }
        }
        f.write_str(&parts.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Table;

    fn class(who: &str) -> Class {
        let yaml =
            format!("rules:\n  - {{ id: r, match: \"/a/{{b}}\", allow: [get], who: {who} }}\n");
        let table = Table::from_yaml(&yaml, 0).unwrap();
        Class::of(&table.rules[0].who)
    }

    #[test]
    fn meets_and_containment() {
        let eng = class("{ groups: [eng, ops] }");
        let alice = class("{ subjects: [alice], groups: [eng] }");
        assert!(alice.within(&eng));
        assert!(!eng.within(&alice));
        let both = eng.meet(&alice).unwrap();
        assert!(both.within(&alice) && both.within(&eng));
        assert!(
            class("{ issuers: [a] }")
                .meet(&class("{ issuers: [b] }"))
                .is_none()
        );
        assert!(
            class("{ claims: { team: a } }")
                .meet(&class("{ claims: { team: b } }"))
                .is_none()
        );
        assert!(class("{ any: true }").is_everyone());
        assert_eq!(
            both.to_string(),
            "subject alice and group any of [eng, ops] and group eng"
        );
    }

    #[test]
    fn least_members_are_members_and_claims_stay_distinct() {
        let c = class("{ groups: [a, b], claims: { roles: { contains: admin } } }");
        let members = c.least_members();
        assert_eq!(members.len(), 2);
        assert!(members.iter().all(|m| c.matches(m)));
        let exact = class("{ claims: { roles: [admin] } }");
        assert!(!members.iter().any(|m| exact.matches(m)));
        assert!(!c.within(&exact));
    }

    #[test]
    fn emails_compare_case_insensitively() {
        let c = class("{ emails: [Ada@Example.com] }");
        let p = Principal::new(
            "i".into(),
            "s".into(),
            Some("ADA@example.COM".into()),
            vec![],
            Default::default(),
        );
        assert!(c.matches(&p));
    }
}

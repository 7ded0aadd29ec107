//! Raw rules → checked [`Rule`]s: actions, `who`, `when`, `as`, with every
//! problem reported by file and line.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Env;

use super::condition::Condition;
use super::format::{PolicyErrors, RawCatalogWho, RawClaim, RawMode, RawRule, RawWho, Source};
use super::pattern::Pattern;
use crate::authn::Principal;
use crate::catalog::refs::is_plain_name;
use crate::model::mask::FieldMask;
use crate::model::{Access, Database};

/// A set of accesses, as a bitmask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions(u8);

impl Actions {
    fn bit(access: Access) -> u8 {
        match access {
            Access::Get => 1,
            Access::List => 2,
            Access::Create => 4,
            Access::Update => 8,
            Access::Delete => 16,
        }
    }

    pub fn contains(self, access: Access) -> bool {
        self.0 & Self::bit(access) != 0
    }

    /// Whether any read access (`get`, `list`) is in the set.
    pub fn reads(self) -> bool {
        self.contains(Access::Get) || self.contains(Access::List)
    }

    /// Every access of `other` is one of these.
    pub fn includes(self, other: Actions) -> bool {
        other.0 & !self.0 == 0
    }

    /// A non-empty list of action names, as rules write them.
    pub fn parse_all(names: &[String]) -> Result<Actions, String> {
        if names.is_empty() {
            return Err("lists no action".into());
        }
        let mut actions = Actions::default();
        for name in names {
            let a = Actions::parse(name).ok_or_else(|| {
                format!(
                    "unknown action `{name}` (known: get, list, create, update, delete, read, write)"
                )
            })?;
            actions.0 |= a.0;
        }
        Ok(actions)
    }

    /// `read` = get + list; `write` = create + update + delete.
    fn parse(name: &str) -> Option<Actions> {
        let accesses: &[Access] = match name {
            "get" => &[Access::Get],
            "list" => &[Access::List],
            "create" => &[Access::Create],
            "update" => &[Access::Update],
            "delete" => &[Access::Delete],
            "read" => &[Access::Get, Access::List],
            "write" => &[Access::Create, Access::Update, Access::Delete],
            _ => return None,
        };
        Some(Actions(accesses.iter().fold(0, |m, &a| m | Self::bit(a))))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A claim test of `who.claims`.
#[derive(Debug)]
pub(crate) enum ClaimTest {
    Equals(serde_json::Value),
    /// An array claim holding this element.
    Contains(serde_json::Value),
}

/// The `who:` selector. Every present key must match; within a key's list,
/// any entry.
#[derive(Debug, Default)]
pub struct Who {
    pub(crate) issuers: Option<Vec<String>>,
    pub(crate) subjects: Option<Vec<String>>,
    /// Lower-cased: email addresses compare case-insensitively.
    pub(crate) emails: Option<Vec<String>>,
    pub(crate) groups: Option<Vec<String>>,
    pub(crate) claims: Vec<(String, ClaimTest)>,
    /// Bound to the Backstage catalog; judged with the rule's path bindings.
    pub(crate) catalog: Option<CatalogWho>,
}

/// `who.catalog`: the caller must own the entity, or be a member of the
/// group, that the template names once the path's wildcards are put in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogWho {
    OwnerOf(RefTemplate),
    MemberOf(RefTemplate),
}

/// An entity ref with `{wildcard}`s of the rule's pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefTemplate {
    pub text: String,
    pieces: Vec<RefPiece>,
    /// For a text then one wildcard (`component:default/{service}`): what
    /// precedes the id in the canonical ref, when a plain id
    /// ([`is_plain_name`]) completes it as it is. A decision then checks
    /// the id alone; any other id, or template, is normalized whole.
    prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RefPiece {
    Text(String),
    Var(String),
}

impl RefTemplate {
    fn parse(text: &str, bindings: &[&str]) -> Result<RefTemplate, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(RefPiece::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("`{text}`: unclosed `{{`"))?;
            let name = &rest[open + 1..open + close];
            if !bindings.contains(&name) {
                return Err(format!(
                    "`{text}`: `{{{name}}}` is not a single-segment wildcard of `match`"
                ));
            }
            pieces.push(RefPiece::Var(name.to_owned()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("`{text}`: stray `}}`"));
        }
        if !rest.is_empty() {
            pieces.push(RefPiece::Text(rest.to_owned()));
        }
        // A plain id changes nothing in how the rest of the text reads (it
        // holds no `:`, `/`, space or capital), so the canonical form of
        // `prefix` + `x` shows the prefix of every plain id's.
        let prefix = match pieces.as_slice() {
            [RefPiece::Text(t), RefPiece::Var(_)] => {
                crate::catalog::refs::normalize(&format!("{t}x"), None, "default")
                    .and_then(|c| c.strip_suffix('x').map(str::to_owned))
            }
            _ => None,
        };
        Ok(RefTemplate {
            text: text.to_owned(),
            pieces,
            prefix,
        })
    }

    /// The canonical ref for these bindings; `None` when a wildcard is
    /// unbound or the result names no entity.
    pub fn expand<'a>(&self, binding: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        // Room for the wildcards' ids: one allocation, not a regrowth.
        let mut out = String::with_capacity(self.text.len() + 48);
        for piece in &self.pieces {
            match piece {
                RefPiece::Text(t) => out.push_str(t),
                RefPiece::Var(name) => out.push_str(binding(name)?),
            }
        }
        crate::catalog::refs::normalize_owned(out, None, "default")
    }

    /// `f` of the canonical ref for these bindings (`None` as for
    /// [`RefTemplate::expand`]), built in a per-thread buffer: a decision
    /// allocates nothing for it.
    pub fn with_expanded<'a, R>(
        &self,
        binding: impl Fn(&str) -> Option<&'a str>,
        f: impl FnOnce(&str) -> R,
    ) -> Option<R> {
        thread_local! {
            static BUFFER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        BUFFER.with(|buffer| {
            let Ok(mut out) = buffer.try_borrow_mut() else {
                return self.expand(&binding).map(|e| f(&e));
            };
            out.clear();
            if let (Some(prefix), [_, RefPiece::Var(name)]) = (&self.prefix, &self.pieces[..]) {
                let id = binding(name)?;
                if is_plain_name(id) {
                    out.push_str(prefix);
                    out.push_str(id);
                    return Some(f(&out));
                }
            }
            for piece in &self.pieces {
                match piece {
                    RefPiece::Text(t) => out.push_str(t),
                    RefPiece::Var(name) => out.push_str(binding(name)?),
                }
            }
            if crate::catalog::refs::canonicalize_in_place(&mut out) {
                Some(f(&out))
            } else {
                crate::catalog::refs::normalize(&out, None, "default").map(|e| f(&e))
            }
        })
    }
}

impl CatalogWho {
    pub fn template(&self) -> &RefTemplate {
        match self {
            CatalogWho::OwnerOf(t) | CatalogWho::MemberOf(t) => t,
        }
    }

    /// `owner_of component:default/{service}`.
    pub fn describe(&self) -> String {
        match self {
            CatalogWho::OwnerOf(t) => format!("owner_of {}", t.text),
            CatalogWho::MemberOf(t) => format!("member_of {}", t.text),
        }
    }

    /// Whether the caller owns (is a member of) the entity named once the
    /// bindings are put in; `None` when that cannot be told (no index yet,
    /// a wildcard unbound): an allow then matches nobody, a deny applies.
    pub fn matches<'a>(
        &self,
        p: &Principal,
        view: Option<&crate::catalog::View>,
        binding: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<bool> {
        let view = view?;
        Some(self.matches_caller(view.caller(p), view, binding))
    }

    /// [`CatalogWho::matches`] for a caller already resolved against
    /// `view` (once per request, whatever the rules and targets).
    pub fn matches_caller<'a>(
        &self,
        caller: crate::catalog::Caller,
        view: &crate::catalog::View,
        binding: impl Fn(&str) -> Option<&'a str>,
    ) -> bool {
        // A wildcard whose id makes no entity ref names no entity: nobody.
        self.template()
            .with_expanded(binding, |entity| match self {
                CatalogWho::OwnerOf(_) => view.index.caller_owns(caller, entity),
                CatalogWho::MemberOf(_) => view.index.caller_is_member(caller, entity),
            })
            .unwrap_or(false)
    }
}

impl Who {
    /// Whether `p` matches, `catalog` included: a catalog-bound `who`
    /// matches only when the catalog tells it does (no index, a wildcard
    /// unbound: nobody).
    pub fn matches<'a>(
        &self,
        p: &Principal,
        view: Option<&crate::catalog::View>,
        binding: impl Fn(&str) -> Option<&'a str>,
    ) -> bool {
        self.matches_except_catalog(p)
            && self
                .catalog
                .as_ref()
                .is_none_or(|c| c.matches(p, view, binding) == Some(true))
    }

    /// Every key but `catalog`, which the caller judges (with a rule's
    /// path bindings), or over-approximates on purpose.
    pub fn matches_except_catalog(&self, p: &Principal) -> bool {
        let any_of = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|v| v == value))
        };
        any_of(&self.issuers, &p.issuer)
            && any_of(&self.subjects, &p.subject)
            && self.emails.as_ref().is_none_or(|l| {
                p.email
                    .as_deref()
                    .is_some_and(|e| l.iter().any(|v| v.eq_ignore_ascii_case(e)))
            })
            && self
                .groups
                .as_ref()
                .is_none_or(|l| p.groups.iter().any(|g| l.contains(g)))
            && self.claims.iter().all(|(name, test)| {
                let value = p.claims.get(name);
                match test {
                    ClaimTest::Equals(want) => value == Some(want),
                    ClaimTest::Contains(want) => value
                        .and_then(|v| v.as_array())
                        .is_some_and(|a| a.contains(want)),
                }
            })
    }
}

/// A checked rule.
pub struct Rule {
    pub id: Arc<str>,
    pub effect: Effect,
    pub actions: Actions,
    pub pattern: Pattern,
    pub who: Who,
    pub when: Option<Condition>,
    /// `None`: any database. A value with `/` is a full name
    /// (`projects/p/databases/d`), otherwise a database id.
    pub database: Option<String>,
    pub upstream_account: Option<String>,
    /// `mode: shadow`: judged beside the enforced rules, for the audit
    /// record only.
    pub shadow: bool,
    /// `mask:` the fields hidden from the reads this rule allows (and
    /// protected from the writes it allows).
    pub mask: Option<Arc<FieldMask>>,
}

impl Rule {
    pub fn applies_to(&self, database: &Database) -> bool {
        self.database.as_deref().is_none_or(|want| {
            if want.contains('/') {
                want == database.to_string()
            } else {
                want == database.database
            }
        })
    }
}

/// Check every rule of every source; the rules come back in table order.
pub fn compile_rules(env: &Env, sources: &[Source]) -> Result<Vec<Rule>, PolicyErrors> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    // Where each id was first defined; lines are only looked up for errors,
    // since finding one scans the file.
    let mut seen: HashMap<&str, (&Source, usize)> = HashMap::new();
    for source in sources {
        for (index, raw) in source.file.rules.iter().enumerate() {
            if let Some(&(first, first_index)) = seen.get(raw.id.as_str()) {
                let at = first.error(first_index, Some("id"), String::new());
                let at = match at.line {
                    Some(line) => format!("{}:{line}", at.file),
                    None => at.file,
                };
                let message = format!("duplicate rule id `{}` (first defined at {at})", raw.id);
                errors.push(source.error(index, Some("id"), message));
            } else {
                seen.insert(&raw.id, (source, index));
            }
            let mut problems = Vec::new();
            let rule = compile_rule(env, raw, &mut problems);
            for (key, message) in problems {
                let message = format!("rule `{}`: {message}", raw.id);
                errors.push(source.error(index, Some(key), message));
            }
            rules.extend(rule);
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(PolicyErrors(errors))
    }
}

pub(super) type Problems = Vec<(&'static str, String)>;

fn compile_rule(env: &Env, raw: &RawRule, problems: &mut Problems) -> Option<Rule> {
    let before = problems.len();
    if raw.id.is_empty() || raw.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push(("id", "`id` must be non-empty, without spaces".into()));
    }
    let pattern = Pattern::parse(&raw.pattern)
        .map_err(|e| problems.push(("match", format!("`match: {}` {e}", raw.pattern))))
        .ok();
    let (effect, actions) = effect_and_actions(raw, problems);
    let single: Vec<&str> = pattern.iter().flat_map(|p| p.single_bindings()).collect();
    let who = compile_who(raw.who.as_ref(), &single, problems);
    let bindings: Vec<&str> = pattern.iter().flat_map(|p| p.bindings()).collect();
    let when = raw.when.as_deref().and_then(|source| {
        Condition::compile(env, source, &bindings)
            .map_err(|errors| problems.extend(errors.into_iter().map(|e| ("when", e))))
            .ok()
    });
    if raw.database.as_deref().is_some_and(str::is_empty) {
        problems.push(("database", "`database` must not be empty".into()));
    }
    if let Some(account) = &raw.upstream_account {
        if effect == Some(Effect::Deny) {
            problems.push(("as", "`as` only makes sense on an allow rule".into()));
        }
        if !account.contains('@') || account.chars().any(char::is_whitespace) {
            problems.push((
                "as",
                format!("`as: {account}` is not a service-account email"),
            ));
        }
    }
    let mask = compile_mask(raw, effect, actions, problems);
    if problems.len() > before {
        return None;
    }
    Some(Rule {
        id: raw.id.as_str().into(),
        effect: effect?,
        actions,
        pattern: pattern?,
        who: who?,
        when,
        database: raw.database.clone(),
        upstream_account: raw.upstream_account.clone(),
        shadow: raw.mode == RawMode::Shadow,
        mask,
    })
}

/// `mask:` field paths, on an allow rule that allows reading.
fn compile_mask(
    raw: &RawRule,
    effect: Option<Effect>,
    actions: Actions,
    problems: &mut Problems,
) -> Option<Arc<FieldMask>> {
    let texts = raw.mask.as_ref()?;
    if effect == Some(Effect::Deny) {
        problems.push(("mask", "`mask` only makes sense on an allow rule".into()));
    } else if !actions.reads() {
        problems.push((
            "mask",
            "`mask` hides fields from reads; this rule allows no read (get, list, read)".into(),
        ));
    }
    if texts.is_empty() {
        problems.push(("mask", "`mask` lists no field; remove it".into()));
    }
    match FieldMask::parse(texts.iter().map(String::as_str)) {
        Ok(mask) if mask.hides(&["__name__".to_string()]) => {
            problems.push((
                "mask",
                "`__name__` cannot be masked (it names the document)".into(),
            ));
            None
        }
        Ok(mask) => (!mask.is_empty()).then(|| Arc::new(mask)),
        Err(errors) => {
            problems.extend(errors.into_iter().map(|e| ("mask", format!("mask: {e}"))));
            None
        }
    }
}

fn effect_and_actions(raw: &RawRule, problems: &mut Problems) -> (Option<Effect>, Actions) {
    let (effect, key, names) = match (&raw.allow, &raw.deny) {
        (Some(names), None) => (Effect::Allow, "allow", names),
        (None, Some(names)) => (Effect::Deny, "deny", names),
        (Some(_), Some(_)) => {
            problems.push(("deny", "a rule has `allow` or `deny`, not both".into()));
            return (None, Actions::default());
        }
        (None, None) => {
            problems.push(("id", "a rule needs `allow` or `deny`".into()));
            return (None, Actions::default());
        }
    };
    if names.is_empty() {
        problems.push((key, format!("`{key}` lists no action")));
    }
    let mut actions = Actions::default();
    for name in names {
        match Actions::parse(name) {
            Some(a) => actions.0 |= a.0,
            None => problems.push((
                key,
                format!(
                    "unknown action `{name}` (known: get, list, create, update, delete, read, write)"
                ),
            )),
        }
    }
    (Some(effect), actions)
}

pub(super) fn compile_who(
    raw: Option<&RawWho>,
    single: &[&str],
    problems: &mut Problems,
) -> Option<Who> {
    let Some(raw) = raw else {
        problems.push((
            "id",
            "a rule needs `who` (write `who: { authenticated: true }` for every caller)".into(),
        ));
        return None;
    };
    let before = problems.len();
    for (name, flag) in [("authenticated", raw.authenticated), ("any", raw.any)] {
        if flag == Some(false) {
            problems.push((
                "who",
                format!("`who.{name}: false` matches nobody; remove the rule"),
            ));
        }
    }
    let everyone = raw.authenticated == Some(true) || raw.any == Some(true);
    let lists = [
        ("issuers", &raw.issuers),
        ("subjects", &raw.subjects),
        ("emails", &raw.emails),
        ("groups", &raw.groups),
    ];
    for (name, list) in lists {
        if list.as_ref().is_some_and(Vec::is_empty) {
            problems.push((
                "who",
                format!("`who.{name}` is empty and would match nobody"),
            ));
        }
    }
    let claims: Vec<(String, ClaimTest)> = raw
        .claims
        .iter()
        .flatten()
        .map(|(name, test)| {
            let test = match test {
                RawClaim::Equals(v) => ClaimTest::Equals(v.clone()),
                RawClaim::Contains { contains } => ClaimTest::Contains(contains.clone()),
            };
            (name.clone(), test)
        })
        .collect();
    let catalog = raw
        .catalog
        .as_ref()
        .and_then(|c| compile_catalog(c, single, problems));
    let selects =
        lists.iter().any(|(_, l)| l.is_some()) || !claims.is_empty() || raw.catalog.is_some();
    if !everyone && !selects && problems.len() == before {
        problems.push((
            "who",
            "`who` selects nobody; use `authenticated: true` or name issuers, subjects, emails, groups or claims".into(),
        ));
    }
    Some(Who {
        issuers: raw.issuers.clone(),
        subjects: raw.subjects.clone(),
        emails: raw
            .emails
            .as_ref()
            .map(|l| l.iter().map(|e| e.to_ascii_lowercase()).collect()),
        groups: raw.groups.clone(),
        claims,
        catalog,
    })
}

fn compile_catalog(
    raw: &RawCatalogWho,
    single: &[&str],
    problems: &mut Problems,
) -> Option<CatalogWho> {
    let (text, owner) = match (&raw.owner_of, &raw.member_of) {
        (Some(t), None) => (t, true),
        (None, Some(t)) => (t, false),
        _ => {
            problems.push((
                "who",
                "`who.catalog` takes one of `owner_of` or `member_of`".into(),
            ));
            return None;
        }
    };
    let template = RefTemplate::parse(text, single)
        .map_err(|e| problems.push(("who", format!("`who.catalog`: {e}"))))
        .ok()?;
    // With every wildcard filled in, the text must be an entity ref with
    // its kind written out (and a group for `member_of`).
    let sample = template.expand(|_| Some("x"));
    let kind = sample
        .as_deref()
        .map(crate::catalog::refs::kind_of)
        .filter(|_| text.contains(':'));
    match kind {
        None => problems.push((
            "who",
            format!("`who.catalog`: `{text}` is not an entity ref (`kind:namespace/name`)"),
        )),
        Some(k) if !owner && k != "group" => problems.push((
            "who",
            format!("`who.catalog.member_of` names a group, not a `{k}`"),
        )),
        Some(_) => {}
    }
    Some(if owner {
        CatalogWho::OwnerOf(template)
    } else {
        CatalogWho::MemberOf(template)
    })
}

#[cfg(test)]
mod tests {
    use super::RefTemplate;

    /// The shortcut for a text then one wildcard builds the ref the whole
    /// normalization does, for every template and id (a capital, a space,
    /// a `:` or `/`, a non-ASCII letter, a namespace left out).
    #[test]
    fn one_wildcard_templates_expand_as_the_whole_ref_does() {
        let templates = [
            "component:default/{s}",
            "component:{s}",
            "Component:Default/{s}",
            "component:ops/{s}",
            "component:default/svc-{s}",
            "group:{s}",
            " component:{s}",
            "component:dé/{s}",
            "a/b:{s}",
            "component:default/a:{s}",
            "{s}",
            "x{s}",
            "component:default/{s}-x",
        ];
        let ids = [
            "svc-77", "Svc", "svc ", " svc", "a:b", "a/b", "é", "x\u{a0}", "",
        ];
        let mut fast = 0;
        for text in templates {
            let t = RefTemplate::parse(text, &["s"]).expect(text);
            fast += usize::from(t.prefix.is_some());
            for id in ids {
                let whole = t.expand(|_| Some(id));
                let built = t.with_expanded(|_| Some(id), str::to_owned);
                assert_eq!(built, whole, "{text} with {id:?}");
            }
        }
        assert_eq!(fast, 8, "the templates a shortcut serves");
        proptest::proptest!(|(prefix in "[a-zA-Z:/ é]{0,8}", id in "[a-zA-Z0-9:/ é.-]{0,6}")| {
            let text = format!("{prefix}{{s}}");
            let t = RefTemplate::parse(&text, &["s"]).expect("template");
            let built = t.with_expanded(|_| Some(id.as_str()), str::to_owned);
            proptest::prop_assert_eq!(built, t.expand(|_| Some(id.as_str())));
        });
    }
}

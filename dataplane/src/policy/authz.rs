//! Authorization rules of a virtual server, compiled: the first rule whose selectors all
//! match decides, the default action otherwise. Listings use the same rules, so a caller
//! never sees a tool, prompt or resource it may not use.
//!
//! Resource URIs are matched as the URI they name, not as the text sent: scheme and host
//! lowercased, `.` and `..` segments (also percent-encoded) resolved, so
//! `file:///public/../secret` is `file:///secret`. Allow rules then match exactly; deny
//! rules also match the text as sent, and ignore case, so neither a spelling nor a case
//! change slips past a deny.

use super::auth::Principal;
use switchboard_config::kinds::virtual_server::{Action, Authorization, AuthorizationRule};
use wildmatch::WildMatch;

/// What a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A method about no particular item (initialize, listings, ping...).
    Nothing,
    Tool(&'a str),
    Prompt(&'a str),
    Resource(&'a str),
}

/// The item a request names, from its method and params.
pub fn target_of<'a>(method: &str, params: &'a serde_json::Value) -> Target<'a> {
    let str_at = |ptr: &str| params.pointer(ptr).and_then(serde_json::Value::as_str);
    match method {
        "tools/call" => str_at("/name").map_or(Target::Nothing, Target::Tool),
        "prompts/get" => str_at("/name").map_or(Target::Nothing, Target::Prompt),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            str_at("/uri").map_or(Target::Nothing, Target::Resource)
        }
        "completion/complete" => match str_at("/ref/type") {
            Some("ref/prompt") => str_at("/ref/name").map_or(Target::Nothing, Target::Prompt),
            Some("ref/resource") => str_at("/ref/uri").map_or(Target::Nothing, Target::Resource),
            _ => Target::Nothing,
        },
        _ => Target::Nothing,
    }
}

/// The URI `uri` names, for matching: parsed and serialized again (scheme and host
/// lowercased, dot segments resolved), or as sent when it does not parse as a URI.
pub fn resource_named(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(parsed) => parsed.to_string(),
        Err(_) => uri.to_string(),
    }
}

#[derive(Debug)]
struct Rule {
    action: Action,
    methods: Vec<WildMatch>,
    tools: Vec<WildMatch>,
    prompts: Vec<WildMatch>,
    /// Case-sensitive for allow rules, case-insensitive for deny rules.
    resources: Vec<WildMatch>,
    subjects: Vec<WildMatch>,
    groups: Vec<WildMatch>,
    scopes: Vec<WildMatch>,
}

fn patterns(list: &[String]) -> Vec<WildMatch> {
    list.iter().map(|p| WildMatch::new(p)).collect()
}

/// Any pattern matches any value (an unset selector is handled by the caller).
fn any(patterns: &[WildMatch], values: &[String]) -> bool {
    patterns.iter().any(|p| values.iter().any(|v| p.matches(v)))
}

impl Rule {
    fn compile(r: &AuthorizationRule) -> Rule {
        Rule {
            action: r.action,
            methods: patterns(&r.methods),
            tools: patterns(&r.tools),
            prompts: patterns(&r.prompts),
            resources: match r.action {
                Action::Allow => patterns(&r.resources),
                Action::Deny => r
                    .resources
                    .iter()
                    .map(|p| WildMatch::new_case_insensitive(p))
                    .collect(),
            },
            subjects: patterns(&r.subjects),
            groups: patterns(&r.groups),
            scopes: patterns(&r.scopes),
        }
    }

    fn matches(&self, who: &Principal, method: &str, target: Target<'_>) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|p| p.matches(method)) {
            return false;
        }
        let names_items =
            !(self.tools.is_empty() && self.prompts.is_empty() && self.resources.is_empty());
        if names_items {
            let hit = |list: &[WildMatch], name: &str| list.iter().any(|p| p.matches(name));
            let matched = match target {
                Target::Tool(n) => hit(&self.tools, n),
                Target::Prompt(n) => hit(&self.prompts, n),
                Target::Resource(u) => {
                    let named = resource_named(u);
                    match self.action {
                        Action::Allow => hit(&self.resources, &named),
                        Action::Deny => hit(&self.resources, &named) || hit(&self.resources, u),
                    }
                }
                Target::Nothing => false,
            };
            if !matched {
                return false;
            }
        }
        (self.subjects.is_empty() || self.subjects.iter().any(|p| p.matches(&who.subject)))
            && (self.groups.is_empty() || any(&self.groups, &who.groups))
            && (self.scopes.is_empty() || any(&self.scopes, &who.scopes))
    }
}

/// A virtual server's compiled rules.
#[derive(Debug, Default)]
pub struct Rules {
    default: Action,
    rules: Vec<Rule>,
}

impl Rules {
    /// Compiles a server's `authorization` block.
    pub fn compile(spec: &Authorization) -> Rules {
        Rules {
            default: spec.default_action,
            rules: spec.rules.iter().map(Rule::compile).collect(),
        }
    }

    /// True when every request is allowed, so listings need no filtering.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty() && self.default == Action::Allow
    }

    /// Whether `who` may send `method` about `target`. `defaultAction` decides for
    /// requests that name a tool, prompt or resource; others (listings, logging...) that no
    /// rule matches are allowed, so a deny-by-default server still lists what it allows.
    pub fn allows(&self, who: &Principal, method: &str, target: Target<'_>) -> bool {
        let fallback = match target {
            Target::Nothing => Action::Allow,
            _ => self.default,
        };
        let action = self
            .rules
            .iter()
            .find(|r| r.matches(who, method, target))
            .map_or(fallback, |r| r.action);
        action == Action::Allow
    }

    /// Whether `who` may see a listed item (it may when it may use it).
    pub fn shows(&self, who: &Principal, item: Target<'_>) -> bool {
        let method = match item {
            Target::Tool(_) => "tools/call",
            Target::Prompt(_) => "prompts/get",
            Target::Resource(_) => "resources/read",
            Target::Nothing => return true,
        };
        self.allows(who, method, item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Rules {
        Rules::compile(&serde_yaml::from_str(yaml).expect("yaml"))
    }

    fn who(subject: &str, groups: &[&str]) -> Principal {
        Principal {
            subject: subject.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            scopes: vec![],
            expires: None,
        }
    }

    #[test]
    fn first_match_wins_then_default() {
        let r = rules(
            "defaultAction: deny\nrules:\n  - action: allow\n    tools: ['admin_*']\n    groups: [admins]\n  - action: deny\n    tools: ['admin_*']\n  - action: allow\n",
        );
        let admin = who("ann", &["admins"]);
        let dev = who("dan", &["devs"]);
        assert!(r.allows(&admin, "tools/call", Target::Tool("admin_reset")));
        assert!(!r.allows(&dev, "tools/call", Target::Tool("admin_reset")));
        assert!(r.allows(&dev, "tools/call", Target::Tool("echo")));
        assert!(r.allows(&dev, "tools/list", Target::Nothing));
        assert!(!r.shows(&dev, Target::Tool("admin_reset")));
        let closed = rules("defaultAction: deny\n");
        assert!(closed.allows(&admin, "tools/list", Target::Nothing));
        assert!(!closed.allows(&admin, "tools/call", Target::Tool("echo")));
        let no_resources = rules("rules:\n  - action: deny\n    methods: ['resources/*']\n");
        assert!(!no_resources.allows(&admin, "resources/list", Target::Nothing));
        assert!(Rules::default().is_open());
    }

    #[test]
    fn resource_rules_match_the_uri_named_not_its_spelling() {
        let r = rules(
            "defaultAction: deny\nrules:\n  - action: deny\n    resources: ['file:///public/private/*']\n  - action: allow\n    resources: ['file:///public/*', 'docs://handbook/guide/*']\n",
        );
        let anyone = who("a", &[]);
        let read = |uri| r.allows(&anyone, "resources/read", Target::Resource(uri));
        assert!(read("file:///public/notes.txt"));
        assert!(read("docs://handbook/guide/intro"));
        // Traversal out of the allowed tree, plain and percent-encoded.
        assert!(!read("file:///public/../secret"));
        assert!(!read("file:///public/%2e%2e/secret"));
        assert!(!read("file:///public/x/../../secret"));
        assert!(!read("docs://handbook/guide/../admin"));
        assert!(!read("docs://handbook/guide/%2E%2E/admin"));
        // A case change does not pass a deny (nor widen an allow).
        assert!(!read("file:///public/private/key"));
        assert!(!read("file:///public/PRIVATE/key"));
        assert!(!read("FILE:///public/Private/key"));
        assert!(!read("file:///PUBLIC/notes.txt"));
        // Dot segments inside the allowed tree are fine.
        assert!(read("file:///public/a/../notes.txt"));
        assert_eq!(resource_named("FILE:///a/./b/../c"), "file:///a/c");
        assert_eq!(resource_named("not a uri"), "not a uri");
        let open = rules(
            "rules:\n  - action: deny\n    resources: ['docs://secret/*', 'file:///secret/*']\n",
        );
        assert!(
            !open.allows(
                &anyone,
                "resources/subscribe",
                Target::Resource("file:///open/../secret/key")
            ),
            "{open:?}"
        );
    }

    #[test]
    fn targets_come_from_params() {
        let p = serde_json::json!({"name": "t", "uri": "file:///x", "ref": {"type": "ref/prompt", "name": "p"}});
        assert_eq!(target_of("tools/call", &p), Target::Tool("t"));
        assert_eq!(
            target_of("resources/read", &p),
            Target::Resource("file:///x")
        );
        assert_eq!(target_of("completion/complete", &p), Target::Prompt("p"));
        assert_eq!(target_of("ping", &p), Target::Nothing);
    }
}

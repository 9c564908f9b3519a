//! Who is calling the control plane. With TLS in force every caller shows a client
//! certificate from the control plane's client CA, and its `spiffe://switchboard/...` URI
//! names what it is: a data plane of one cluster (`dataplane/<cluster>`), which may open a
//! discovery stream for that cluster only, or an operator with a role
//! (`operator/<viewer|editor|admin>/<name>`) for admin calls. `switchboard certs` issues them.

use tonic::Status;

/// The trust domain of every identity Switchboard issues.
pub const TRUST_DOMAIN: &str = "switchboard";

/// What an operator may do: each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read everything but Secret values (which nobody reads back).
    Viewer,
    /// Apply, delete and refresh everything but Secrets.
    Editor,
    /// Also write Secrets.
    Admin,
}

impl Role {
    /// The role's name in certificates and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// The role called `name`.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The control plane checks no one (the library's default, for in-process use).
    Unchecked,
    /// Holds the control token (plain text on loopback): may do everything.
    TokenHolder,
    /// No certificate, or one that names no Switchboard identity.
    Anonymous,
    /// A data plane that may join `cluster`.
    DataPlane { cluster: String },
    /// An operator.
    Operator { name: String, role: Role },
}

/// The URI SAN of a data plane of `cluster`.
pub fn dataplane_uri(cluster: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/dataplane/{cluster}")
}

/// The URI SAN of operator `name` with `role`.
pub fn operator_uri(role: Role, name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/operator/{}/{name}", role.as_str())
}

/// The identity a (verified) leaf certificate names.
pub fn caller_of_certificate(leaf: &[u8]) -> Caller {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return Caller::Anonymous;
    };
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| s.value.general_names.clone())
        .unwrap_or_default();
    let prefix = format!("spiffe://{TRUST_DOMAIN}/");
    for name in &sans {
        let x509_parser::extensions::GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(path) = uri.strip_prefix(&prefix) else {
            continue;
        };
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["dataplane", cluster] if !cluster.is_empty() => {
                return Caller::DataPlane {
                    cluster: (*cluster).to_string(),
                }
            }
            ["operator", role, name] if !name.is_empty() => {
                if let Some(role) = Role::parse(role) {
                    return Caller::Operator {
                        name: (*name).to_string(),
                        role,
                    };
                }
            }
            _ => {}
        }
    }
    Caller::Anonymous
}

/// How the control plane tells who calls it.
#[derive(Clone, Default)]
pub enum Gate {
    /// No one is checked (in-process use and tests of the library only: the binary never
    /// serves this way).
    #[default]
    Open,
    /// TLS with a client CA: callers are who their certificate says.
    Certificates,
    /// Plain text on loopback: callers show the control token (`Authorization: Bearer`),
    /// kept here as its SHA-256.
    Token([u8; 32]),
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Gate::Open => "Open",
            Gate::Certificates => "Certificates",
            Gate::Token(_) => "Token",
        })
    }
}

impl Gate {
    /// A gate that lets in holders of `token`.
    pub fn token(token: &str) -> Gate {
        use sha2::Digest;
        Gate::Token(sha2::Sha256::digest(token.as_bytes()).into())
    }
}

/// The operator whose `OperatorToken` has this SHA-256, and the role it grants.
pub fn operator_by_token(state: &crate::state::RegistryState, digest: &[u8; 32]) -> Option<Caller> {
    let hex = hex::encode(digest);
    state
        .records
        .range((switchboard_config::Kind::OperatorToken, String::new())..)
        .take_while(|((kind, _), _)| *kind == switchboard_config::Kind::OperatorToken)
        .find_map(|((_, name), record)| match crate::state::decode(record)? {
            switchboard_config::Resource::OperatorToken(t)
                if t.spec.sha256.eq_ignore_ascii_case(&hex) =>
            {
                Role::parse(&t.spec.role).map(|role| Caller::Operator {
                    name: name.clone(),
                    role,
                })
            }
            _ => None,
        })
}

/// The SHA-256 of the bearer token `request` carries, if any.
fn bearer_digest<T>(request: &tonic::Request<T>) -> Option<[u8; 32]> {
    use sha2::Digest;
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| sha2::Sha256::digest(t.trim().as_bytes()).into())
}

/// The caller of `request` as `gate` sees it: a client certificate's identity (with TLS),
/// then an operator's token (`OperatorToken`, looked up in `state`), then the control token
/// (without TLS). Digests are compared, so timing tells nothing about a token itself.
pub fn caller<T>(
    request: &tonic::Request<T>,
    gate: &Gate,
    state: &crate::state::RegistryState,
) -> Caller {
    if let Gate::Open = gate {
        return Caller::Unchecked;
    }
    if let Gate::Certificates = gate {
        let by_certificate = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|leaf| caller_of_certificate(leaf)))
            .filter(|c| *c != Caller::Anonymous);
        if let Some(who) = by_certificate {
            return who;
        }
    }
    let Some(digest) = bearer_digest(request) else {
        return Caller::Anonymous;
    };
    if let Some(operator) = operator_by_token(state, &digest) {
        return operator;
    }
    match gate {
        Gate::Token(expected) if *expected == digest => Caller::TokenHolder,
        _ => Caller::Anonymous,
    }
}

/// The caller of `request` if it may make an admin call that needs `role`.
pub fn require<T>(
    request: &tonic::Request<T>,
    gate: &Gate,
    state: &crate::state::RegistryState,
    role: Role,
) -> Result<Caller, Status> {
    let who = caller(request, gate, state);
    match &who {
        Caller::Unchecked | Caller::TokenHolder => Ok(who),
        Caller::Operator { role: has, .. } if *has >= role => Ok(who),
        Caller::Operator { name, role: has } => Err(Status::permission_denied(format!(
            "operator `{name}` is a {}; this needs {}",
            has.as_str(),
            role.as_str()
        ))),
        Caller::DataPlane { cluster } => Err(Status::permission_denied(format!(
            "a data plane's certificate (cluster `{cluster}`) cannot make admin calls"
        ))),
        Caller::Anonymous => Err(Status::unauthenticated(match gate {
            Gate::Token(_) => "admin calls need the control token: set SWITCHBOARD_CONTROL_TOKEN (the control plane wrote it to control-token in its data directory)",
            _ => "admin calls need an operator's client certificate (switchboard certs operator) or token (switchboard token create)",
        })),
    }
}

/// Refuses an operator whose role is below `role` for `what` (others were checked already).
pub fn at_least(who: &Caller, role: Role, what: &str) -> Result<(), Status> {
    match who {
        Caller::Operator { role: has, .. } if *has < role => Err(Status::permission_denied(
            format!("{} cannot {what}: that needs {}", actor(who), role.as_str()),
        )),
        _ => Ok(()),
    }
}

/// Who did it, for the record of writes: the operator's name, or `unchecked`.
pub fn actor(caller: &Caller) -> String {
    match caller {
        Caller::Operator { name, role } => format!("{name} ({})", role.as_str()),
        Caller::DataPlane { cluster } => format!("dataplane/{cluster}"),
        Caller::Unchecked => "unchecked".into(),
        Caller::TokenHolder => "control-token holder".into(),
        Caller::Anonymous => "anonymous".into(),
    }
}

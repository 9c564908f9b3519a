//! What the gateway serves, compiled from one snapshot: per virtual server, its local prompts
//! and resources and its tool/prompt/resource listings, ready to answer from memory. Built
//! when a snapshot arrives (a snapshot that does not compile is NACKed), then swapped in whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use switchboard_config::kinds::{prompt::PromptSpec, resource::ResourceSpec};
use switchboard_config::Snapshot;

/// Everything one snapshot routes.
#[derive(Debug, Default)]
pub struct Routes {
    /// The snapshot version these routes came from.
    pub version: String,
    servers: HashMap<String, Arc<ServerView>>,
    hosts: HashMap<String, String>,
}

/// One virtual server as clients see it.
#[derive(Debug, Default)]
pub struct ServerView {
    pub name: String,
    pub description: Option<String>,
    /// Local prompts by the name clients use.
    pub prompts: BTreeMap<String, PromptSpec>,
    /// Local resources by URI.
    pub resources: BTreeMap<String, ResourceSpec>,
    /// Tool definitions as listed to clients (from discovered catalogs).
    pub tools: Vec<serde_json::Value>,
    /// The snapshot version, for pagination cursors.
    pub version: String,
}

impl Routes {
    /// Compiles a snapshot; any template that does not compile rejects the whole snapshot.
    pub fn compile(snapshot: &Snapshot) -> Result<Routes, String> {
        let mut routes = Routes {
            version: snapshot.version.clone(),
            ..Routes::default()
        };
        let env = minijinja::Environment::new();
        for (name, vs) in &snapshot.virtual_servers {
            let mut view = ServerView {
                name: name.clone(),
                description: vs.description.clone(),
                version: snapshot.version.clone(),
                ..ServerView::default()
            };
            for p in &vs.prompts {
                let spec = snapshot
                    .prompts
                    .get(p)
                    .ok_or_else(|| format!("virtual server `{name}` lists unknown prompt `{p}`"))?;
                let templates = spec
                    .template
                    .iter()
                    .chain(spec.messages.iter().flatten().map(|m| &m.template));
                for t in templates {
                    env.template_from_str(t)
                        .map_err(|e| format!("prompt `{p}`: template does not compile: {e}"))?;
                }
                view.prompts.insert(p.clone(), spec.clone());
            }
            for r in &vs.resources {
                let spec = snapshot.resources.get(r).ok_or_else(|| {
                    format!("virtual server `{name}` lists unknown resource `{r}`")
                })?;
                view.resources.insert(spec.uri.clone(), spec.clone());
            }
            for host in &vs.hosts {
                if let Some(other) = routes.hosts.insert(host.to_ascii_lowercase(), name.clone()) {
                    return Err(format!(
                        "host `{host}` is claimed by virtual servers `{other}` and `{name}`"
                    ));
                }
            }
            routes.servers.insert(name.clone(), Arc::new(view));
        }
        Ok(routes)
    }

    /// The virtual server named in a path.
    pub fn server(&self, name: &str) -> Option<Arc<ServerView>> {
        self.servers.get(name).cloned()
    }

    /// The virtual server mapped to a Host header (port ignored).
    pub fn server_for_host(&self, host: &str) -> Option<Arc<ServerView>> {
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        self.hosts
            .get(&bare.to_ascii_lowercase())
            .and_then(|name| self.server(name))
    }
}

//! A consistent collection of resources (what a file set, the store, or a snapshot holds),
//! and loading one from files.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::object::{Kind, Resource};
use crate::parse::{parse_source, Located};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file's name (as the user wrote it) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// Resources keyed by kind and name; names are unique per kind.
#[derive(Debug, Clone, Default)]
pub struct ResourceSet {
    items: BTreeMap<(Kind, String), Located>,
}

impl ResourceSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a resource; returns the one it replaced.
    pub fn insert(&mut self, item: Located) -> Option<Located> {
        let key = (item.resource.kind(), item.resource.name().to_string());
        self.items.insert(key, item)
    }

    /// Adds a resource that came from nowhere in particular (the store, a snapshot).
    pub fn insert_resource(&mut self, resource: Resource) -> Option<Located> {
        self.insert(Located {
            resource,
            origin: None,
        })
    }

    /// Removes a resource by kind and name.
    pub fn remove(&mut self, kind: Kind, name: &str) -> Option<Located> {
        self.items.remove(&(kind, name.to_string()))
    }

    /// Looks a resource up by kind and name.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Located> {
        self.items.get(&(kind, name.to_string()))
    }

    /// Whether a resource of that kind and name exists.
    pub fn contains(&self, kind: Kind, name: &str) -> bool {
        self.get(kind, name).is_some()
    }

    /// Every resource, ordered by kind then name.
    pub fn iter(&self) -> impl Iterator<Item = &Located> {
        self.items.values()
    }

    /// Every resource, mutably (kinds and names must not change).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Located> {
        self.items.values_mut()
    }

    /// Every resource of one kind, ordered by name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Located> {
        self.items
            .range((kind, String::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .map(|(_, v)| v)
    }

    /// How many resources the set holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Parses several files into one set, reporting every syntax, schema and duplicate-name
/// error (but not semantic ones: see [`crate::validate()`]).
pub fn parse_sources(sources: &[Source]) -> (ResourceSet, Vec<Diagnostic>) {
    let mut set = ResourceSet::new();
    let mut errors = Vec::new();
    for source in sources {
        let (parsed, errs) = parse_source(&source.name, &source.text);
        errors.extend(errs);
        for item in parsed {
            if let Some(first) = set.get(item.resource.kind(), item.resource.name()) {
                let first_at = match &first.origin {
                    Some(o) => {
                        let line = o.index.locate("metadata.name").map(|p| p.line).unwrap_or(0);
                        format!("{}:{line}", o.file)
                    }
                    None => "elsewhere".to_string(),
                };
                errors.push(item.diagnostic(
                    "metadata.name",
                    format!(
                        "duplicate {} `{}` (first defined at {first_at})",
                        item.resource.kind(),
                        item.resource.name()
                    ),
                ));
                continue;
            }
            set.insert(item);
        }
    }
    (set, errors)
}

/// Reads files, or every `*.yaml`/`*.yml` file (sorted) in a directory; `-` is stdin.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, Diagnostics> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let mut text = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                Ok(_) => sources.push(Source {
                    name: "<stdin>".into(),
                    text,
                }),
                Err(e) => errors.push(file_error(path, &e)),
            }
            continue;
        }
        let files = if path.is_dir() {
            match yaml_files_in(path) {
                Ok(files) => files,
                Err(e) => {
                    errors.push(file_error(path, &e));
                    continue;
                }
            }
        } else {
            vec![path.clone()]
        };
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push(Source {
                    name: file.display().to_string(),
                    text,
                }),
                Err(e) => errors.push(file_error(&file, &e)),
            }
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(Diagnostics(errors))
    }
}

fn yaml_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn file_error(path: &Path, e: &std::io::Error) -> Diagnostic {
    Diagnostic {
        file: path.display().to_string(),
        document: None,
        line: None,
        column: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
    }
}

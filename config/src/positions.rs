//! Where each node of a YAML file sits, so semantic errors found on typed values can still
//! point at a line. Built from yaml-rust2's marked events; paths look like
//! `spec.upstreams[0].upstream`.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Position {
    fn from(m: Marker) -> Self {
        Position {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// Positions of the nodes of one document, by field path.
#[derive(Debug, Clone, Default)]
pub struct PathIndex {
    nodes: HashMap<String, Position>,
}

impl PathIndex {
    /// The position of `path`, or of its nearest ancestor that exists (a missing field is
    /// reported at the mapping that lacks it).
    pub fn locate(&self, path: &str) -> Option<Position> {
        let mut p = path;
        loop {
            if let Some(pos) = self.nodes.get(p) {
                return Some(*pos);
            }
            if p.is_empty() {
                return None;
            }
            p = parent_path(p);
        }
    }
}

fn parent_path(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// One document of a YAML stream: where it starts and its position index.
#[derive(Debug, Clone)]
pub struct DocumentSpan {
    /// 1-based line of the document's first line (its `---`, or its first content).
    pub start_line: usize,
    pub index: PathIndex,
    /// False for documents holding nothing but comments (e.g. after a trailing `---`).
    pub has_content: bool,
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub document: usize,
    pub position: Position,
    pub message: String,
}

enum Frame {
    /// `first_key`: the mapping's position is still yaml-rust2's marker, which sits at the
    /// first `:`; the first key's position is what a reader expects.
    Map {
        path: String,
        key: Option<String>,
        first_key: bool,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// Deepest nesting of mappings and sequences read. Resources nest a dozen levels at most;
/// what is deeper is refused before any recursive walk (serde's, or a drop of the value)
/// could exhaust the stack, and it keeps every path in the index short.
pub const MAX_NESTING: usize = 64;

#[derive(Default)]
struct Builder {
    docs: Vec<DocumentSpan>,
    stack: Vec<Frame>,
    /// Where the nesting first went past [`MAX_NESTING`], and in which document.
    too_deep: Option<(usize, Position)>,
}

impl Builder {
    /// Path of the node that the next event starts, advancing the parent's cursor.
    fn next_child_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key, .. }) => match key.take() {
                Some(k) if path.is_empty() => Some(k),
                Some(k) => Some(format!("{path}.{k}")),
                None => None, // this node is a key
            },
        }
    }

    fn record(&mut self, path: &str, pos: Position) {
        if let Some(doc) = self.docs.last_mut() {
            doc.index.nodes.entry(path.to_string()).or_insert(pos);
            doc.has_content = true;
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Position::from(mark);
        let opens = matches!(ev, Event::MappingStart(..) | Event::SequenceStart(..));
        if opens && self.stack.len() >= MAX_NESTING {
            let doc = self.docs.len().saturating_sub(1);
            self.too_deep.get_or_insert((doc, pos));
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.docs.push(DocumentSpan {
                    start_line: pos.line,
                    index: PathIndex::default(),
                    has_content: false,
                });
                self.stack.clear();
            }
            // A document that is only an empty (null) scalar, e.g. after a trailing `---`,
            // holds nothing.
            Event::Scalar(value, ..)
                if self.stack.is_empty() && matches!(value.as_str(), "" | "~" | "null") => {}
            Event::Scalar(value, ..) => match self.next_child_path() {
                Some(path) => self.record(&path, pos),
                None => {
                    let mut fix_map_position = None;
                    if let Some(Frame::Map {
                        key,
                        first_key,
                        path,
                    }) = self.stack.last_mut()
                    {
                        *key = Some(value);
                        if std::mem::take(first_key) {
                            fix_map_position = Some(path.clone());
                        }
                    }
                    if let (Some(path), Some(doc)) = (fix_map_position, self.docs.last_mut()) {
                        doc.index.nodes.insert(path, pos);
                    }
                }
            },
            Event::Alias(_) => {
                if let Some(path) = self.next_child_path() {
                    self.record(&path, pos);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A complex key (rare in config) gets a path of its own parent; fine for
                // error positions.
                let path = self.next_child_path().unwrap_or_default();
                self.record(&path, pos);
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        path,
                        key: None,
                        first_key: true,
                    }
                } else {
                    Frame::Seq { path, next: 0 }
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Splits a YAML stream into documents and indexes each one's node positions. The events
/// are read one by one (yaml-rust2's `load` recurses once per level, so a deep enough
/// document would exhaust the stack), and reading stops where the nesting passes
/// [`MAX_NESTING`].
pub fn index_documents(text: &str) -> Result<Vec<DocumentSpan>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return Ok(builder.docs),
            Ok((ev, mark)) => {
                builder.on_event(ev, mark);
                if let Some((document, position)) = builder.too_deep {
                    return Err(SyntaxError {
                        document,
                        position,
                        message: format!(
                            "mappings and sequences nest deeper than {MAX_NESTING} levels here"
                        ),
                    });
                }
            }
            Err(e) => {
                return Err(SyntaxError {
                    document: builder.docs.len().saturating_sub(1),
                    position: Position::from(*e.marker()),
                    message: e.info().to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_documents() {
        let text = "a: 1\nb:\n  c: [x, y]\n  d:\n    - e: 2\n---\nkind: X\n";
        let docs = index_documents(text).expect("valid yaml");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].start_line, 1);
        assert_eq!(docs[1].start_line, 6);
        let ix = &docs[0].index;
        assert_eq!(ix.locate("a"), Some(Position { line: 1, column: 4 }));
        assert_eq!(ix.locate("b.c[1]").map(|p| p.line), Some(3));
        assert_eq!(
            ix.locate("b.d[0].e"),
            Some(Position {
                line: 5,
                column: 10
            })
        );
        // A missing field falls back to its parent.
        assert_eq!(ix.locate("b.d[0].missing").map(|p| p.line), Some(5));
        assert_eq!(docs[1].index.locate("kind").map(|p| p.line), Some(7));
        // A mapping in a sequence is positioned at its first key, not at its first `:`.
        assert_eq!(ix.locate("b.d[0]"), Some(Position { line: 5, column: 7 }));
    }

    #[test]
    fn nesting_past_the_limit_is_refused_where_it_starts() {
        // 100 000 nested block sequences (200 KB): refused at once, with little memory.
        let bomb = "- ".repeat(100_000) + "x\n";
        let err = index_documents(&bomb).expect_err("too deep");
        assert_eq!(err.position.line, 1);
        assert_eq!(err.position.column, 2 * MAX_NESTING + 1, "{err:?}");
        assert!(err.message.contains("deeper than 64 levels"), "{err:?}");
        // Flow style, and in a later document.
        let flow = format!("a: 1\n---\nb: {}{}\n", "[".repeat(500), "]".repeat(500));
        let err = index_documents(&flow).expect_err("too deep");
        assert_eq!((err.document, err.position.line), (1, 3), "{err:?}");
        // The limit itself is fine.
        let deepest = "- ".repeat(MAX_NESTING) + "x\n";
        let docs = index_documents(&deepest).expect("64 levels are read");
        assert!(docs[0].index.locate(&"[0]".repeat(MAX_NESTING)).is_some());
    }

    #[test]
    fn syntax_error_has_position() {
        let err = index_documents("a: 1\nb: [1, 2\n").expect_err("unclosed flow sequence");
        assert!(err.position.line >= 2, "{err:?}");
    }
}

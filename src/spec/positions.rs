//! Where each key and value of a YAML document is (line and column), and
//! the source text of plain scalars, by path (`nodes[1].replicas`).
//!
//! serde gives the location of the first error only; this index lets every
//! validation error and every unknown key carry its line. Built with
//! saphyr-parser's event stream; best effort: on a document it cannot read
//! it keeps what it indexed (serde_norway reports the syntax error).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    key: Option<Pos>,
    value: Pos,
    /// The text of a plain (unquoted) scalar value.
    raw: Option<String>,
}

/// The index.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    map: HashMap<String, Entry>,
    /// Second occurrences of a key in one mapping, in document order.
    duplicates: Vec<(String, Pos)>,
}

enum Frame {
    Map {
        path: Option<String>,
        /// The key whose value comes next, or None when a key comes next.
        key: Option<(Option<String>, Pos)>,
    },
    Seq {
        path: Option<String>,
        index: usize,
    },
    /// Inside a complex (non-scalar) key: ignored.
    Skip(usize),
}

/// `parent` + `.key` (or `key` at the root).
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent` + `[index]`.
pub(crate) fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

impl Positions {
    /// Index `yaml` (its first document).
    pub(crate) fn build(yaml: &str) -> Positions {
        let mut out = Positions::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(yaml);
        let mut started = false;
        while let Some(Ok((event, span))) = parser.next_event() {
            if let Some(Frame::Skip(depth)) = stack.last_mut() {
                match event {
                    Event::MappingStart(..) | Event::SequenceStart(..) => *depth += 1,
                    Event::MappingEnd | Event::SequenceEnd => {
                        *depth -= 1;
                        if *depth == 0 {
                            stack.pop();
                            // The complex key is done: its value has no path.
                            if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                                *key = Some((None, Pos::of(&span)));
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match event {
                Event::DocumentStart(_) => {
                    if started {
                        break;
                    }
                    started = true;
                }
                Event::Scalar(text, style, ..) => {
                    if out.key_slot(&mut stack, &span, Some(&text)) {
                        continue;
                    }
                    let raw = (style == ScalarStyle::Plain).then(|| text.into_owned());
                    out.value_slot(&mut stack, &span, raw);
                }
                Event::Alias(_) => {
                    if out.key_slot(&mut stack, &span, None) {
                        continue;
                    }
                    out.value_slot(&mut stack, &span, None);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let is_map = matches!(event, Event::MappingStart(..));
                    if let Some(Frame::Map { key: None, .. }) = stack.last() {
                        stack.push(Frame::Skip(1));
                        continue;
                    }
                    let path = out.value_slot(&mut stack, &span, None);
                    stack.push(if is_map {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, index: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::DocumentEnd | Event::StreamEnd => break,
                _ => {}
            }
        }
        out
    }

    /// If a map expects a key, take this scalar (or alias) as the key.
    fn key_slot(&mut self, stack: &mut [Frame], span: &Span, text: Option<&str>) -> bool {
        if let Some(Frame::Map { key, .. }) = stack.last_mut() {
            if key.is_none() {
                *key = Some((text.map(str::to_owned), Pos::of(span)));
                return true;
            }
        }
        false
    }

    /// Record a value node; returns its path.
    fn value_slot(
        &mut self,
        stack: &mut [Frame],
        span: &Span,
        raw: Option<String>,
    ) -> Option<String> {
        let value = Pos::of(span);
        let (path, key_pos) = match stack.last_mut() {
            None => (Some(String::new()), None),
            Some(Frame::Map { path, key }) => {
                let (k, kpos) = key.take().expect("value without key");
                let p = match (path.as_deref(), k) {
                    (Some(parent), Some(k)) => Some(join_key(parent, &k)),
                    _ => None,
                };
                (p, Some(kpos))
            }
            Some(Frame::Seq { path, index }) => {
                let p = path.as_deref().map(|parent| join_index(parent, *index));
                *index += 1;
                (p, None)
            }
            Some(Frame::Skip(_)) => (None, None),
        };
        if let Some(p) = &path {
            if self.map.contains_key(p) {
                self.duplicates.push((p.clone(), key_pos.unwrap_or(value)));
            } else {
                self.map.insert(
                    p.clone(),
                    Entry {
                        key: key_pos,
                        value,
                        raw,
                    },
                );
            }
        }
        path
    }

    /// Position of `path`'s key (or of the value for a list item), else of
    /// its nearest indexed parent.
    pub(crate) fn key_pos(&self, path: &str) -> Option<Pos> {
        self.nearest(path).map(|e| e.key.unwrap_or(e.value))
    }

    /// Position of `path`'s value, else of its nearest indexed parent.
    pub(crate) fn value_pos(&self, path: &str) -> Option<Pos> {
        self.nearest(path).map(|e| e.value)
    }

    /// Where the key at `path` is repeated, for serde_norway's "duplicate
    /// entry" error, which has no location.
    pub(crate) fn duplicate(&self, path: &str) -> Option<(&str, Pos)> {
        self.duplicates
            .iter()
            .find(|(p, _)| p == path)
            .map(|(p, pos)| (p.as_str(), *pos))
    }

    /// The source text of `path`'s value when it is a plain scalar.
    pub(crate) fn raw(&self, path: &str) -> Option<&str> {
        self.map.get(path).and_then(|e| e.raw.as_deref())
    }

    /// The entry of `path` or of its nearest parent; a top-level key that
    /// is absent has no position (the document start would mislead).
    fn nearest(&self, mut path: &str) -> Option<&Entry> {
        loop {
            if let Some(e) = self.map.get(path) {
                return Some(e);
            }
            path = parent(path);
            if path.is_empty() {
                return None;
            }
        }
    }
}

/// `a.b[1].c` → `a.b[1]` → `a.b` → `a` → ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_keys_values_and_raw_scalars() {
        let y = "name: x\ncpuCores: .5\nnodes:\n  - name: a\n    replicas: 1\n  - {name: b, replicas: two}\nenv: [{name: A, value: 'q'}]\n? [complex]\n: 1\ntag: 1.10\n";
        let p = Positions::build(y);
        assert_eq!(p.key_pos("name"), Some(Pos { line: 1, column: 1 }));
        assert_eq!(p.value_pos("name"), Some(Pos { line: 1, column: 7 }));
        assert_eq!(p.raw("cpuCores"), Some(".5"));
        assert_eq!(
            p.key_pos("nodes[0].replicas"),
            Some(Pos { line: 5, column: 5 })
        );
        assert_eq!(
            p.value_pos("nodes[1].replicas"),
            Some(Pos {
                line: 6,
                column: 25
            })
        );
        assert_eq!(p.key_pos("nodes[1]"), Some(Pos { line: 6, column: 5 }));
        assert_eq!(
            p.raw("env[0].value"),
            None,
            "quoted scalars have no raw text"
        );
        assert_eq!(
            p.value_pos("env[0].value"),
            Some(Pos {
                line: 7,
                column: 24
            })
        );
        assert_eq!(p.raw("tag"), Some("1.10"));
        // Unknown paths fall back to the nearest parent.
        assert_eq!(p.key_pos("nodes[1].nope"), Some(Pos { line: 6, column: 5 }));
        assert_eq!(p.key_pos("zzz"), None, "absent top-level key");
    }

    #[test]
    fn survives_broken_documents() {
        let p = Positions::build("a: 1\nb: [1\n");
        assert_eq!(p.value_pos("a"), Some(Pos { line: 1, column: 4 }));
        let _ = Positions::build("");
        let _ = Positions::build("- 1\n- 2\n");
        let _ = Positions::build("a: &x 1\nb: *x\n---\nc: 2\n");
    }
}

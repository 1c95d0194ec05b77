//! YAML → [`ServiceSpec`], reporting every problem at once.
//!
//! 1. serde_norway reads the document (a syntax error stops here, with its
//!    line and column).
//! 2. [`Positions`] indexes where every key and value is.
//! 3. Numbers go back to their source text where the text matters (Go's
//!    yaml.v3 decodes `tag: 1.10` into the string `"1.10"`; a YAML number
//!    would print `1.1`).
//! 4. The typed pass runs; a value of the wrong type is recorded, removed
//!    and the pass retried, so every type error is reported, not just the
//!    first. Keys the types do not know are collected on the way.
//! 5. The validation rules run on the typed spec ([`super::validate`]).

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use serde_norway::Value;

use super::de::did_you_mean;
use super::positions::{join_index, join_key, Pos, Positions};
use super::{validate, ServiceSpec};
use crate::limits::{
    human_size, MAX_REPORTED_ISSUES, MAX_SPEC_BYTES, MAX_SPEC_DEPTH, MAX_SPEC_ENTRIES,
    MAX_SPEC_PATH_BYTES, MAX_SPEC_VALUES,
};

/// How bad an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The spec is rejected.
    Error,
    /// The spec is accepted; something in it is ignored or suspicious.
    Warning,
}

/// One problem in a spec, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecIssue {
    /// Error or warning.
    pub severity: Severity,
    /// Path of the key (`nodes[1].replicas`); empty for the whole document.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for SpecIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, " (line {l}, column {c})"),
            (Some(l), None) => write!(f, " (line {l})"),
            _ => Ok(()),
        }
    }
}

/// Why a spec was rejected: every error (and the warnings found alongside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors {
    /// At least one.
    pub errors: Vec<SpecIssue>,
    /// Warnings found on the way.
    pub warnings: Vec<SpecIssue>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The last issue may stand for those left out ([`MAX_REPORTED_ISSUES`]).
        let n = match self.errors.last().and_then(not_listed) {
            Some(more) => self.errors.len() - 1 + more,
            None => self.errors.len(),
        };
        write!(
            f,
            "invalid spec ({n} error{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// What unknown keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Errors (for what a person is about to deploy).
    Strict,
    /// Warnings (for a spec already stored, possibly by another tool: the
    /// Go CLI stores files unvalidated).
    Lenient,
}

/// A valid spec and its warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The spec, normalized (protocols lowercased, defaults filled in).
    pub spec: ServiceSpec,
    /// Ignored keys, suspicious settings.
    pub warnings: Vec<SpecIssue>,
}

/// Parse and validate a spec; unknown keys are errors. Warnings are
/// dropped: use [`parse_detailed`] to show them.
pub fn parse(yaml: &str) -> Result<ServiceSpec, SpecErrors> {
    parse_detailed(yaml, Strictness::Strict).map(|p| p.spec)
}

/// Parse and validate a spec, returning warnings too.
///
/// The limits of [`crate::limits`] apply whatever the strictness: a spec
/// larger than [`MAX_SPEC_BYTES`], or whose shape breaks a limit (nesting,
/// entries of one list, values in all, path length), is refused before it
/// is parsed; the limits of each field are validation rules.
pub fn parse_detailed(yaml: &str, strictness: Strictness) -> Result<Parsed, SpecErrors> {
    let mut issues = Issues::default();
    if yaml.len() > MAX_SPEC_BYTES {
        issues.error(
            "",
            None,
            &format!(
                "the spec is {} bytes, more than the limit of {} ({MAX_SPEC_BYTES} bytes)",
                yaml.len(),
                human_size(MAX_SPEC_BYTES)
            ),
        );
        return Err(issues.into_errors());
    }
    // Before serde_norway: libyaml takes a time quadratic in the nesting
    // depth (minutes for a few hundred KiB of `[`).
    if let Some((path, pos, why)) = check_shape(yaml) {
        issues.error(&path, pos, &why);
        return Err(issues.into_errors());
    }
    let positions = Positions::build(yaml);
    let mut value: Value = match serde_norway::from_str(yaml) {
        Ok(v) => v,
        Err(e) => {
            issues.push_yaml_error(&e, &positions);
            return Err(issues.into_errors());
        }
    };
    match &value {
        Value::Mapping(_) => {}
        Value::Null => {
            issues.error(
                "",
                None,
                "the spec is empty: expected a mapping with at least `name` and `tag`",
            );
            return Err(issues.into_errors());
        }
        other => {
            issues.error(
                "",
                Some(Pos { line: 1, column: 1 }),
                &format!(
                    "expected a mapping (`key: value` lines), found {}",
                    kind(other)
                ),
            );
            return Err(issues.into_errors());
        }
    }
    restore_number_text(&mut value, "", &positions);

    // Typed pass, retried past each type error.
    let mut bad_paths: HashSet<String> = HashSet::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut spec = None;
    for _ in 0..256 {
        unknown.clear();
        let mut track = serde_path_to_error::Track::new();
        let result: Result<ServiceSpec, _> = serde_ignored::deserialize(
            serde_path_to_error::Deserializer::new(&value, &mut track),
            |p| unknown.push(ignored_path(&p)),
        );
        match result {
            Ok(s) => {
                spec = Some(s);
                break;
            }
            Err(e) => {
                let segments = track.path();
                let path = track_path(&segments);
                if !bad_paths.contains(&path) {
                    issues.error(&path, positions.value_pos(&path), &e.to_string());
                }
                let retried = bad_paths.contains(&path);
                bad_paths.insert(path.clone());
                if path.is_empty() || !remove(&mut value, &segments, retried) {
                    break;
                }
            }
        }
    }

    let unknown_severity = match strictness {
        Strictness::Strict => Severity::Error,
        Strictness::Lenient => Severity::Warning,
    };
    for path in &unknown {
        if issues.full(unknown_severity) {
            // Only counted: no need for a hint (a costly comparison).
            issues.push(unknown_severity, path, None, "");
            continue;
        }
        let (parent, key) = split_last(path);
        let hint = did_you_mean(key, known_keys(parent))
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        let msg = format!("unknown key{hint}");
        issues.push(unknown_severity, path, positions.key_pos(path), &msg);
    }

    let Some(mut spec) = spec else {
        return Err(issues.into_errors());
    };
    let mut found = Vec::new();
    validate::validate(&spec, &mut found);
    for (severity, path, message) in found {
        // A value already reported with the wrong type was defaulted: its
        // follow-up complaints would only repeat it.
        if bad_paths.iter().any(|b| {
            path == *b || path.starts_with(&format!("{b}.")) || path.starts_with(&format!("{b}["))
        }) {
            continue;
        }
        let pos = positions.key_pos(&path);
        match severity {
            Severity::Error => issues.error(&path, pos, &message),
            Severity::Warning => issues.warning(&path, pos, &message),
        }
    }
    if !issues.errors.is_empty() {
        return Err(issues.into_errors());
    }
    validate::normalize(&mut spec);
    Ok(Parsed {
        spec,
        warnings: issues.sorted_warnings(),
    })
}

/// What makes the document too big to parse, if anything: nesting deeper
/// than [`MAX_SPEC_DEPTH`], a path longer than [`MAX_SPEC_PATH_BYTES`], a
/// list or mapping of more than [`MAX_SPEC_ENTRIES`], more than
/// [`MAX_SPEC_VALUES`] values in all. One pass of saphyr-parser's events
/// (linear, little memory), before serde_norway builds the document:
/// libyaml's time grows with the nesting depth times the size, and the
/// parsed document and its index take hundreds of bytes per value (a 1 MiB
/// `[a,a,...]` took 300 MB), times the length of its path.
///
/// saphyr-parser, unlike libyaml, stops at 255 levels of `[`/`{`. If it
/// cannot read the document, libyaml gets it only when it has at most
/// [`LIBYAML_SAFE_FLOW_OPENINGS`] of them; otherwise saphyr's error is the
/// answer.
fn check_shape(yaml: &str) -> Option<(String, Option<Pos>, String)> {
    use saphyr_parser::{Event, Marker, Parser};
    enum Seg {
        Key(String),
        Index(usize),
        Complex,
    }
    struct Frame {
        /// How the parent names this collection (None at the root).
        seg: Option<Seg>,
        is_map: bool,
        entries: usize,
        /// Maps: the next node is a key.
        want_key: bool,
        /// Maps: the key of the value that comes next, and where it is.
        key: Option<String>,
        key_at: Option<Pos>,
        /// Where it is reported: its key, or its start.
        at: Option<Pos>,
        /// The length of its path (`nodes[1]`).
        path_len: usize,
    }
    let seg_len = |seg: &Option<Seg>| match seg {
        None => 0,
        Some(Seg::Key(k)) => k.len() + 1,
        Some(Seg::Index(i)) => i.checked_ilog10().unwrap_or(0) as usize + 3,
        Some(Seg::Complex) => 2,
    };
    let pos = |m: &Marker| {
        Some(Pos {
            line: m.line(),
            column: m.col() + 1,
        })
    };
    let join = |p: String, seg: &Option<Seg>| match seg {
        None => p,
        Some(Seg::Key(k)) => join_key(&p, k),
        Some(Seg::Index(i)) => join_index(&p, *i),
        Some(Seg::Complex) => join_key(&p, "?"),
    };
    let path_of = |stack: &[Frame]| stack.iter().fold(String::new(), |p, f| join(p, &f.seg));
    let deeper = || format!("lists and mappings nested deeper than {MAX_SPEC_DEPTH} levels");
    let mut stack: Vec<Frame> = Vec::new();
    let mut values = 0usize;
    let mut too_many: Option<(String, Option<Pos>, String)> = None;
    let mut too_many_values: Option<Option<Pos>> = None;
    let mut parser = Parser::new_from_str(yaml);
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(e) => e,
            Err(e) if e.info().contains("recursion limit") => {
                return Some((String::new(), pos(e.marker()), deeper()));
            }
            Err(e) => {
                let openings = yaml.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
                return (openings > LIBYAML_SAFE_FLOW_OPENINGS)
                    .then(|| (String::new(), pos(e.marker()), e.info().to_owned()));
            }
        };
        let starts = matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(_)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
        );
        if starts {
            values += 1;
            if values > MAX_SPEC_VALUES && too_many_values.is_none() {
                too_many_values = Some(pos(&span.start));
            }
        }
        // Where the node that starts belongs in its parent. In a map,
        // keys and values alternate: each node done flips `want_key`.
        let mut seg = None;
        let mut at = pos(&span.start);
        let mut path_len = 0;
        if starts {
            let scalar = matches!(event, Event::Scalar(..) | Event::Alias(_));
            if let Some(top) = stack.last_mut() {
                if top.is_map && top.want_key {
                    top.entries += 1;
                    top.key = match &event {
                        Event::Scalar(text, ..) => Some(text.to_string()),
                        _ => None,
                    };
                    top.key_at = at;
                    seg = Some(Seg::Complex);
                } else if top.is_map {
                    seg = Some(top.key.take().map_or(Seg::Complex, Seg::Key));
                    at = top.key_at.or(at);
                } else {
                    seg = Some(Seg::Index(top.entries));
                    top.entries += 1;
                }
                if top.is_map && scalar {
                    top.want_key = !top.want_key;
                }
                // Every value's path is indexed (and copied): long paths
                // times many values would take gigabytes.
                let len = top.path_len
                    + match (&top.key, &seg) {
                        (Some(k), Some(Seg::Complex)) => k.len() + 1,
                        _ => seg_len(&seg),
                    };
                if len > MAX_SPEC_PATH_BYTES {
                    return Some((
                        path_of(&stack),
                        at,
                        format!(
                            "a key here makes a path (`a.b[1].c`) longer than \
                             {MAX_SPEC_PATH_BYTES} bytes"
                        ),
                    ));
                }
                path_len = len;
            }
        }
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if stack.len() >= MAX_SPEC_DEPTH {
                    return Some((path_of(&stack), pos(&span.start), deeper()));
                }
                let is_map = matches!(event, Event::MappingStart(..));
                stack.push(Frame {
                    seg,
                    is_map,
                    entries: 0,
                    want_key: true,
                    key: None,
                    key_at: None,
                    at,
                    path_len,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(done) = stack.pop() else { continue };
                if done.entries > MAX_SPEC_ENTRIES && too_many.is_none() {
                    let path = join(path_of(&stack), &done.seg);
                    let what = if path.is_empty() {
                        " top-level keys"
                    } else {
                        " entries"
                    };
                    too_many = Some((
                        path,
                        done.at,
                        format!("{}{what}, at most {MAX_SPEC_ENTRIES}", done.entries),
                    ));
                }
                if let Some(top) = stack.last_mut() {
                    if top.is_map {
                        top.want_key = !top.want_key;
                    }
                }
            }
            Event::DocumentStart(_) => stack.clear(),
            Event::StreamEnd => break,
            _ => {}
        }
    }
    too_many.or_else(|| {
        too_many_values.map(|at| {
            (
                String::new(),
                at,
                format!(
                    "more than {MAX_SPEC_VALUES} values (scalars, lists and mappings, keys \
                     included)"
                ),
            )
        })
    })
}

/// A document with at most this many `[` and `{` is nested at most as
/// deep in flow style, where libyaml's time grows with the depth.
const LIBYAML_SAFE_FLOW_OPENINGS: usize = 256;

/// The errors or warnings of one spec: at most [`MAX_REPORTED_ISSUES`] of
/// each are kept (a node logs every warning, and publishes the errors in
/// one status message); the others are counted.
#[derive(Default)]
struct Issues {
    errors: Vec<SpecIssue>,
    warnings: Vec<SpecIssue>,
    more_errors: usize,
    more_warnings: usize,
}

/// The issue standing for `n` more left out: `and 12 more errors (...)`.
fn more_issue(severity: Severity, n: usize) -> SpecIssue {
    let what = match severity {
        Severity::Error => "errors",
        Severity::Warning => "warnings",
    };
    SpecIssue {
        severity,
        path: String::new(),
        line: None,
        column: None,
        message: format!("and {n} more {what} (only the first {MAX_REPORTED_ISSUES} are listed)"),
    }
}

/// How many issues `issue` stands for, if it is a [`more_issue`].
fn not_listed(issue: &SpecIssue) -> Option<usize> {
    if !issue.path.is_empty() || issue.line.is_some() {
        return None;
    }
    let (n, rest) = issue.message.strip_prefix("and ")?.split_once(' ')?;
    rest.ends_with(" are listed)").then(|| n.parse().ok())?
}

impl Issues {
    /// Are no more issues of `severity` kept (only counted)?
    fn full(&self, severity: Severity) -> bool {
        match severity {
            Severity::Error => self.errors.len() >= MAX_REPORTED_ISSUES,
            Severity::Warning => self.warnings.len() >= MAX_REPORTED_ISSUES,
        }
    }

    fn push(&mut self, severity: Severity, path: &str, pos: Option<Pos>, message: &str) {
        let (list, more) = match severity {
            Severity::Error => (&mut self.errors, &mut self.more_errors),
            Severity::Warning => (&mut self.warnings, &mut self.more_warnings),
        };
        if list.len() >= MAX_REPORTED_ISSUES {
            *more += 1;
            return;
        }
        list.push(SpecIssue {
            severity,
            path: path.to_owned(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message: message.to_owned(),
        });
    }
    fn error(&mut self, path: &str, pos: Option<Pos>, message: &str) {
        self.push(Severity::Error, path, pos, message)
    }
    fn warning(&mut self, path: &str, pos: Option<Pos>, message: &str) {
        self.push(Severity::Warning, path, pos, message)
    }

    /// A serde_norway error, its location moved out of the message.
    fn push_yaml_error(&mut self, e: &serde_norway::Error, positions: &Positions) {
        let mut message = e.to_string();
        let pos = e.location().map(|l| Pos {
            line: l.line(),
            column: l.column(),
        });
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // "nodes[1].replicas: invalid type ..." → path + message.
        let (path, message) = match message.split_once(": ") {
            Some((p, m)) if !p.contains(' ') => (p.to_owned(), m.to_owned()),
            _ => (String::new(), message),
        };
        if let Some(key) = message
            .strip_prefix("duplicate entry with key \"")
            .and_then(|k| k.strip_suffix('"'))
        {
            if let Some((dup, at)) = positions.duplicate(&join_key(&path, key)) {
                self.error(dup, Some(at), "duplicate key (each key may appear once)");
                return;
            }
        }
        self.error(&path, pos.or(Some(Pos { line: 1, column: 1 })), &message);
    }

    fn sort(v: &mut [SpecIssue]) {
        v.sort_by_key(|i| (i.line.unwrap_or(usize::MAX), i.column.unwrap_or(0)));
    }

    /// Sorted, then the count of those left out.
    fn finish(list: &mut Vec<SpecIssue>, severity: Severity, more: usize) {
        Self::sort(list);
        if more > 0 {
            list.push(more_issue(severity, more));
        }
    }

    fn into_errors(mut self) -> SpecErrors {
        Self::finish(&mut self.errors, Severity::Error, self.more_errors);
        Self::finish(&mut self.warnings, Severity::Warning, self.more_warnings);
        SpecErrors {
            errors: self.errors,
            warnings: self.warnings,
        }
    }

    fn sorted_warnings(mut self) -> Vec<SpecIssue> {
        Self::finish(&mut self.warnings, Severity::Warning, self.more_warnings);
        self.warnings
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Put back the source text of numbers whose text the typed value would
/// lose: every float (`1.10`, `.5`) and integers not written canonically
/// (`0123`). Float fields accept the text ([`super::de::float`]).
fn restore_number_text(value: &mut Value, path: &str, positions: &Positions) {
    match value {
        Value::Number(n) => {
            if let Some(raw) = positions.raw(path) {
                if n.is_f64() || raw != n.to_string() {
                    *value = Value::String(raw.to_owned());
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                restore_number_text(item, &join_index(path, i), positions);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                if let Some(k) = key_text(k) {
                    restore_number_text(v, &join_key(path, &k), positions);
                }
            }
        }
        _ => {}
    }
}

fn key_text(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Drop the value at `path` so the next typed pass uses the default. A list
/// item becomes null first (keeping later indices), and is removed if null
/// is not accepted either (`retried`).
fn remove(value: &mut Value, path: &serde_path_to_error::Path, retried: bool) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        cur = match (seg, cur) {
            (Segment::Map { key }, Value::Mapping(m)) => match m.get_mut(key.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Sequence(s)) => match s.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Sequence(s)) if *index < s.len() => {
            if retried {
                s.remove(*index);
            } else {
                s[*index] = Value::Null;
            }
            true
        }
        _ => false,
    }
}

fn track_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Map { key } => out = join_key(&out, key),
            Segment::Seq { index } => out = join_index(&out, *index),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

fn ignored_path(p: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => join_index(&ignored_path(parent), *index),
        Path::Map { parent, key } => join_key(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// `a.b[2].c` → (`a.b[2]`, `c`).
fn split_last(path: &str) -> (&str, &str) {
    match path.rfind('.') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The keys a mapping at `parent` accepts (for "did you mean").
pub(crate) fn known_keys(parent: &str) -> &'static [&'static str] {
    // `nodes[3]` → `nodes[]`.
    let mut pattern = String::with_capacity(parent.len());
    let mut in_index = false;
    for c in parent.chars() {
        match c {
            '[' => {
                in_index = true;
                pattern.push('[');
            }
            ']' => {
                in_index = false;
                pattern.push(']');
            }
            _ if in_index => {}
            _ => pattern.push(c),
        }
    }
    match pattern.as_str() {
        "" => &ROOT_KEYS,
        "nodes[]" => &["name", "replicas"],
        "nodeSelector" => &["labels", "arch", "replicas"],
        "env[]" => &["name", "value", "valueFromSecret"],
        "mounts[]" => &["path", "source"],
        "mounts[].source" => &["objectStore"],
        "secrets[]" => &["name", "path"],
        "landlock" => &[
            "shared",
            "stdio",
            "tty",
            "tmp",
            "vminfo",
            "dns",
            "certs",
            "paths",
            "bestEffort",
        ],
        "landlock.paths[]" => &["path", "modes"],
        "nonet" => &["localPorts"],
        "nonet.localPorts[]" => &["port", "protocol"],
        "metrics" => &["port", "path"],
        "restart" => &["policy", "delay", "maxRestarts", "window"],
        "health" => &[
            "notify",
            "stablePeriod",
            "exec",
            "tcp",
            "http",
            "interval",
            "timeout",
        ],
        "health.http" => &["port", "path"],
        "http" => &["port"],
        "nats" => &["publish", "subscribe", "kv"],
        "jail" => &[
            "hostname",
            "ip4Addresses",
            "allowRawSockets",
            "devfsRuleset",
            "mountSystemCerts",
        ],
        _ => &[],
    }
}

/// Every top-level key.
pub(crate) const ROOT_KEYS: [&str; 31] = [
    "name",
    "description",
    "labels",
    "tag",
    "mode",
    "nodes",
    "nodeSelector",
    "args",
    "env",
    "mounts",
    "secrets",
    "restartOnSecretChange",
    "landlock",
    "user",
    "memoryMB",
    "memoryMaxMB",
    "cpuCores",
    "tasksMax",
    "network",
    "networkNamespacePath",
    "nonet",
    "metrics",
    "restart",
    "stopTimeout",
    "health",
    "http",
    "nats",
    "progressDeadline",
    "command",
    "cgroupParent",
    "jail",
];

/// The size limits, on the lenient path the node agent takes for the specs
/// it reads from KV (written by anyone with NATS access) as on the strict
/// one of `narun deploy`.
#[cfg(test)]
mod limit_tests {
    use super::*;
    use crate::limits::*;

    const BASE: &str = "name: app\ntag: v1\nnodes: [{name: n1, replicas: 1}]\n";

    /// The errors of `yaml`, the same under both strictnesses.
    #[track_caller]
    fn errors(yaml: &str) -> Vec<String> {
        let lenient = parse_detailed(yaml, Strictness::Lenient).expect_err("refused");
        let strict = parse_detailed(yaml, Strictness::Strict).expect_err("refused");
        assert_eq!(lenient.errors, strict.errors);
        lenient.errors.iter().map(ToString::to_string).collect()
    }

    fn list(n: usize, item: &str) -> String {
        format!("[{}]", vec![item; n].join(","))
    }

    #[test]
    fn size_and_list_lengths_are_limited_with_the_field_named() {
        // 500,000 args in less than 1 MiB: refused before it is parsed.
        let yaml = format!("{BASE}args: {}\n", list(500_000, "a"));
        assert!(yaml.len() < MAX_SPEC_BYTES);
        assert_eq!(
            errors(&yaml),
            ["args: 500000 entries, at most 4096 (line 4, column 1)"]
        );
        let yaml = format!("{BASE}description: \"{}\"\n", "x".repeat(MAX_SPEC_BYTES));
        assert_eq!(
            errors(&yaml),
            [format!(
                "the spec is {} bytes, more than the limit of 1 MiB (1048576 bytes)",
                yaml.len()
            )]
        );
        let cases = [
            ("args", list(MAX_ARGS + 1, "a")),
            ("env", list(MAX_ENV + 1, "{name: A}")),
            ("nodes", list(MAX_NODES + 1, "{name: n, replicas: 1}")),
            ("mounts", list(MAX_MOUNTS + 1, "{path: a}")),
            ("secrets", list(MAX_SECRET_FILES + 1, "{name: s}")),
            (
                "nonet",
                format!(
                    "{{localPorts: {}}}",
                    list(MAX_LOCAL_PORTS + 1, "{port: 2000}")
                ),
            ),
            (
                "landlock",
                format!(
                    "{{paths: {}}}",
                    list(MAX_LANDLOCK_PATHS + 1, "{path: /a, modes: r}")
                ),
            ),
            (
                "nodeSelector",
                format!("{{arch: {}}}", list(MAX_SMALL_LIST + 1, "amd64")),
            ),
            (
                "jail",
                format!("{{ip4Addresses: {}}}", list(MAX_SMALL_LIST + 1, "1.2.3.4")),
            ),
        ];
        for (key, value) in cases {
            let e = errors(&format!("{BASE}{key}: {value}\n"));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].contains(" entries, at most "), "{e:?}");
            assert!(e[0].starts_with(key), "{e:?}");
        }
        let labels: Vec<String> = (0..=MAX_LABELS).map(|i| format!("l{i}: v")).collect();
        assert_eq!(
            errors(&format!("{BASE}labels: {{{}}}\n", labels.join(", "))),
            ["labels: 257 entries, at most 256 (line 4, column 1)"]
        );
        let keys: String = (0..=MAX_SPEC_ENTRIES)
            .map(|i| format!("k{i}: 1\n"))
            .collect();
        assert_eq!(
            errors(&format!("{BASE}{keys}")),
            ["4100 top-level keys, at most 4096 (line 1, column 1)"]
        );
        // Many lists within their limits, but too many values in all.
        let lists: String = (0..25)
            .map(|i| format!("x{i}: {}\n", list(4001, "a")))
            .collect();
        let e = errors(&format!("{BASE}{lists}"));
        assert!(e[0].starts_with("more than 100000 values"), "{e:?}");
    }

    #[test]
    fn strings_and_paths_are_limited() {
        let e = errors(&format!(
            "{BASE}args: [a, {}]\n",
            "b".repeat(MAX_ARG_BYTES + 1)
        ));
        assert_eq!(
            e,
            ["args[1]: 131072 bytes long, at most 131071 (Linux's limit on one argument) (line 4, column 11)"]
        );
        let e = errors(&format!(
            "{BASE}env: [{{name: A, value: {}}}]\n",
            "b".repeat(MAX_ARG_BYTES - 1)
        ));
        assert!(e[0].starts_with("env[0]: NAME=value is 131072 bytes long, at most 131071"));
        let long = format!("/{}", "d".repeat(MAX_PATH_BYTES));
        for yaml in [
            format!(
                "mounts: [{{path: d{}, source: {{objectStore: f}}}}]",
                &long[1..]
            ),
            format!("mode: landlock\nlandlock: {{paths: [{{path: {long}, modes: r}}]}}"),
            format!("networkNamespacePath: {long}"),
            format!("metrics: {{port: 9000, path: {long}}}"),
        ] {
            let e = errors(&format!("{BASE}{yaml}\n"));
            assert!(
                e[0].contains(": 4096 bytes long, at most 4095 (Linux's PATH_MAX)"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn nesting_and_key_paths_are_limited_and_fail_fast() {
        let nested = |n: usize| format!("{BASE}x: {}a{}\n", "[".repeat(n), "]".repeat(n));
        // The root mapping is the first level.
        assert!(parse_detailed(&nested(MAX_SPEC_DEPTH - 1), Strictness::Lenient).is_ok());
        let e = errors(&nested(MAX_SPEC_DEPTH));
        assert!(e[0].contains("nested deeper than 32 levels"), "{e:?}");
        // libyaml alone takes minutes on this one.
        let started = std::time::Instant::now();
        let e = errors(&nested(400_000));
        assert!(e[0].contains("nested deeper than 32 levels"), "{e:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A long key would be copied into the path of every value under it.
        let key = "k".repeat(MAX_SPEC_PATH_BYTES);
        let e = errors(&format!("{BASE}x:\n  {key}: [a]\n"));
        assert_eq!(
            e,
            ["x: a key here makes a path (`a.b[1].c`) longer than 256 bytes (line 5, column 3)"]
        );
    }

    #[test]
    fn specs_at_the_limits_are_accepted() {
        let env: Vec<String> = (0..MAX_ENV).map(|i| format!("{{name: V{i}}}")).collect();
        let mounts: Vec<String> = (0..MAX_MOUNTS)
            .map(|i| format!("{{path: m{i}, source: {{objectStore: f}}}}"))
            .collect();
        let yaml = format!(
            "{BASE}args: {}\nenv: [{}]\nmounts: [{}]\n",
            list(MAX_ARGS, "a"),
            env.join(","),
            mounts.join(",")
        );
        let s = parse(&yaml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.args.len(), s.env.len()), (MAX_ARGS, MAX_ENV));
        let big = format!("{BASE}args: [{}]\n", "a".repeat(MAX_ARG_BYTES));
        assert_eq!(parse(&big).unwrap().args[0].len(), MAX_ARG_BYTES);
    }

    #[test]
    fn at_most_100_issues_of_each_kind_are_listed() {
        let keys: String = (0..500).map(|i| format!("k{i}: 1\n")).collect();
        let yaml = format!("{BASE}{keys}");
        let w = parse_detailed(&yaml, Strictness::Lenient).unwrap().warnings;
        assert_eq!(w.len(), MAX_REPORTED_ISSUES + 1);
        assert_eq!(w[0].to_string(), "k0: unknown key (line 4, column 1)");
        assert_eq!(
            w[100].to_string(),
            "and 400 more warnings (only the first 100 are listed)"
        );
        let e = parse(&yaml).unwrap_err();
        assert_eq!(e.errors.len(), MAX_REPORTED_ISSUES + 1);
        assert!(
            e.to_string().starts_with("invalid spec (500 errors):\n"),
            "{e}"
        );
        assert!(e
            .to_string()
            .ends_with("\n  and 400 more errors (only the first 100 are listed)"));
    }
}

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
        let n = self.errors.len();
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
pub fn parse_detailed(yaml: &str, strictness: Strictness) -> Result<Parsed, SpecErrors> {
    let mut issues = Issues::default();
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

    for path in &unknown {
        let (parent, key) = split_last(path);
        let hint = did_you_mean(key, known_keys(parent))
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        let msg = format!("unknown key{hint}");
        match strictness {
            Strictness::Strict => issues.error(path, positions.key_pos(path), &msg),
            Strictness::Lenient => issues.warning(path, positions.key_pos(path), &msg),
        }
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

#[derive(Default)]
struct Issues {
    errors: Vec<SpecIssue>,
    warnings: Vec<SpecIssue>,
}

impl Issues {
    fn push(&mut self, severity: Severity, path: &str, pos: Option<Pos>, message: &str) {
        let issue = SpecIssue {
            severity,
            path: path.to_owned(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message: message.to_owned(),
        };
        match severity {
            Severity::Error => self.errors.push(issue),
            Severity::Warning => self.warnings.push(issue),
        }
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

    fn into_errors(mut self) -> SpecErrors {
        Self::sort(&mut self.errors);
        Self::sort(&mut self.warnings);
        SpecErrors {
            errors: self.errors,
            warnings: self.warnings,
        }
    }

    fn sorted_warnings(mut self) -> Vec<SpecIssue> {
        Self::sort(&mut self.warnings);
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
        "health" => &["notify", "stablePeriod"],
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
pub(crate) const ROOT_KEYS: [&str; 29] = [
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
    "progressDeadline",
    "command",
    "cgroupParent",
    "jail",
];

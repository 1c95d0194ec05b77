//! YAML-ish text for the parsers: documents built from a parser's own keys
//! and from values that trip YAML up (type confusion, anchors, tags, flow
//! collections, odd numbers), rendered in block or flow style, then
//! sometimes damaged (bad indentation, stray characters, cut short), plus
//! deep nesting and arbitrary text.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

#[derive(Debug, Clone)]
pub enum Node {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

const SCALARS: &[&str] = &[
    "",
    "~",
    "null",
    "true",
    "no",
    "yes",
    "0",
    "-1",
    "1",
    "3",
    "65535",
    "65536",
    "1025",
    "1.10",
    ".5",
    "-0.0",
    "1e309",
    ".nan",
    "-.inf",
    "0x1F",
    "0o17",
    "0123",
    "18446744073709551616",
    "-9223372036854775809",
    "\"quoted\"",
    "\"esc\\u00e9\\n\"",
    "'single'",
    "a b",
    "x",
    "&anchor x",
    "*anchor",
    "!!str 5",
    "!!int \"7\"",
    "!!binary aGVsbG8=",
    "!custom v",
    "[]",
    "{}",
    "[a, 1, ~]",
    "{a: 1}",
    "|\n  text",
    ">-\n  folded",
    "\"unterminated",
    "[",
    "}",
    ": :",
    "- -",
    "# comment",
    "`",
    "@",
    "%TAG",
    "\t",
    "é",
    "1s",
    "500ms",
    "2m",
    "1h",
    "0s",
    "10 s",
    "-5s",
    "99999999999h",
    "host",
    "none",
    "exec",
    "landlock",
    "jail",
    "tcp",
    "UDP",
    "always",
    "on-failure",
    "amd64",
    "x86_64",
    "root",
    "0",
    "/metrics",
    "/hello/",
    "/a/../b",
    "/x%2F",
    "GET",
    "post",
    ":8080",
    "127.0.0.1:0",
    "[::1]:80",
    "localhost:99999",
    "svc.a",
    "a..b",
    "hello.v1.Greeter",
    "nats://localhost:4222",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(SCALARS).prop_map(String::from),
        1 => "\\PC{0,12}",
        1 => "[a-z0-9./:-]{1,12}",
        1 => (1usize..300).prop_map(|n| "a".repeat(n)),
    ]
}

fn key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => select(keys).prop_map(String::from),
        1 => "[a-zA-Z_]{1,10}",
        1 => select(vec!["<<", "? complex", "'quoted'", "1", "true", "null", "~", "\"a\\tb\"", "[k]"])
            .prop_map(String::from),
    ]
}

/// A document tree whose keys mostly come from `keys`.
pub fn node(keys: &'static [&'static str]) -> impl Strategy<Value = Node> {
    let leaf = scalar().prop_map(Node::Scalar);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Node::Seq),
            vec((key(keys), inner), 0..6).prop_map(Node::Map),
        ]
    })
}

fn flow(node: &Node, out: &mut String) {
    match node {
        Node::Scalar(s) => out.push_str(s),
        Node::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(item, out);
            }
            out.push(']');
        }
        Node::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                flow(v, out);
            }
            out.push('}');
        }
    }
}

/// Block style, with flow style for every collection at `flow_depth` and
/// below.
fn block(node: &Node, indent: usize, flow_depth: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Map(entries) if indent / 2 < flow_depth && !entries.is_empty() => {
            for (k, v) in entries {
                out.push_str(&pad);
                out.push_str(k);
                out.push(':');
                match v {
                    Node::Scalar(s) => {
                        out.push(' ');
                        out.push_str(s);
                        out.push('\n');
                    }
                    _ => {
                        out.push('\n');
                        block(v, indent + 2, flow_depth, out);
                    }
                }
            }
        }
        Node::Seq(items) if indent / 2 < flow_depth && !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Node::Scalar(s) => {
                        out.push(' ');
                        out.push_str(s);
                        out.push('\n');
                    }
                    _ => {
                        out.push('\n');
                        block(item, indent + 2, flow_depth, out);
                    }
                }
            }
        }
        _ => {
            out.push_str(&pad);
            flow(node, out);
            out.push('\n');
        }
    }
}

#[derive(Debug, Clone)]
enum Damage {
    Insert(Index, String),
    Delete(Index, usize),
    DuplicateLine(Index),
    Truncate(Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (
            any::<Index>(),
            select(vec![
                " ", "  ", "\t", "\n", ":", "- ", "#", "'", "\"", "[", "{", "&a ", "*a", "\r",
                "\u{feff}", "---\n", "...\n"
            ])
        )
            .prop_map(|(i, s)| Damage::Insert(i, s.to_owned())),
        (any::<Index>(), 1usize..6).prop_map(|(i, n)| Damage::Delete(i, n)),
        any::<Index>().prop_map(Damage::DuplicateLine),
        any::<Index>().prop_map(Damage::Truncate),
    ]
}

fn char_boundary(text: &str, i: &Index) -> usize {
    let mut at = i.index(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(mut text: String, damages: &[Damage]) -> String {
    for d in damages {
        match d {
            Damage::Insert(i, s) => {
                let at = char_boundary(&text, i);
                text.insert_str(at, s);
            }
            Damage::Delete(i, n) => {
                let at = char_boundary(&text, i);
                let mut end = (at + n).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, "");
            }
            Damage::DuplicateLine(i) => {
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let n = i.index(lines.len());
                    let mut out: Vec<&str> = lines.clone();
                    out.insert(n, lines[n]);
                    text = out.join("\n");
                    text.push('\n');
                }
            }
            Damage::Truncate(i) => {
                let at = char_boundary(&text, i);
                text.truncate(at);
            }
        }
    }
    text
}

/// YAML-ish documents for a parser whose keys are `keys`.
pub fn document(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    // Mostly a mapping at the top, as the parsers expect.
    let rendered = || {
        let root = prop_oneof![
            4 => vec((key(keys), node(keys)), 0..8).prop_map(Node::Map),
            1 => node(keys),
        ];
        (root, 0usize..5).prop_map(|(node, flow_depth)| {
            let mut out = String::new();
            block(&node, 0, flow_depth, &mut out);
            out
        })
    };
    let deep = (1usize..200, select(vec!["[", "{a: ", "- ", "a:\n "])).prop_map(|(n, open)| {
        let mut s = String::new();
        for i in 0..n {
            if open == "- " || open == "a:\n " {
                s.push_str(&" ".repeat(i));
            }
            s.push_str(open);
            if open.ends_with(' ') && open != "{a: " {
                s.push('\n');
            }
        }
        s.push('x');
        s
    });
    prop_oneof![
        6 => (rendered(), vec(damage(), 0..3))
            .prop_map(|(text, d): (String, Vec<Damage>)| apply(text, &d)),
        2 => rendered(),
        1 => deep,
        1 => "\\PC{0,64}",
        1 => vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

//! Spec table tests: the Go examples, one case per rule, and the hash.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

const EVERY_FIELD: &str = include_str!("../../tests/fixtures/go-specs/every-field.yaml");
const HELLO: &str = include_str!("../../tests/fixtures/go-specs/hello.yaml");
const HELLO_APP: &str = include_str!("../../tests/fixtures/go-specs/hello-app.yaml");
const HELLO_JAIL: &str = include_str!("../../tests/fixtures/go-specs/hello-jail.yaml");

/// The spec `narun deploy -name x -tag y` generates in Go (yaml.v3, 4-space
/// indent, no mode).
const GO_GENERATED: &str = "name: x\ntag: y\nnodes:\n    - name: local\n      replicas: 1\n";

fn errors(yaml: &str) -> Vec<SpecIssue> {
    match parse(yaml) {
        Ok(s) => panic!("expected errors, parsed {s:?}"),
        Err(e) => e.errors,
    }
}

fn warnings(yaml: &str) -> Vec<SpecIssue> {
    parse_detailed(yaml, Strictness::Strict)
        .unwrap_or_else(|e| panic!("{e}"))
        .warnings
}

const BASE: &str = "name: app\ntag: v1\nnodes:\n  - name: n1\n    replicas: 1\n";

#[test]
fn go_examples_load() {
    let p = parse_detailed(EVERY_FIELD, Strictness::Strict).unwrap_or_else(|e| panic!("{e}"));
    let s = &p.spec;
    assert_eq!(s.name, "hello");
    assert_eq!(s.tag, "v13");
    assert_eq!(s.mode, Mode::Landlock);
    assert_eq!(
        s.nodes,
        vec![NodeTarget {
            name: "node-1".into(),
            replicas: 2
        }]
    );
    assert_eq!(s.args, vec!["-concurrency=2"]);
    assert_eq!(s.env[1].value_from_secret, "SECRET");
    assert_eq!(s.mounts[0].source.object_store, "myfile");
    assert!(s.landlock.shared && s.landlock.dns && s.landlock.tmp && !s.landlock.tty);
    assert_eq!(s.landlock.paths[0].modes, "r");
    assert_eq!(s.nonet.local_ports[0].protocol, "tcp", "normalized");
    assert_eq!(s.nonet.local_ports[1].protocol, "udp");
    assert_eq!(s.network(), Network::None, "nonet implies no network");
    assert_eq!(s.metrics_path(), "/metrics");
    assert_eq!((s.memory_mb, s.memory_max_mb, s.cpu_cores), (64, 128, 0.5));
    assert_eq!(s.user, "akh");
    let warned: Vec<&str> = p.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(warned, vec!["cgroupParent", "jail"], "{:?}", p.warnings);
    assert_eq!(p.warnings[0].line, Some(36));

    let s = parse(HELLO_APP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.mode, Mode::Exec, "mode defaults to exec (R3)");
    assert_eq!(s.tag, "hello-app-v1.3");
    assert_eq!(s.args, vec!["--listen", ":9001"]);
    assert_eq!(s.replicas_for("node-arm64", &BTreeMap::new(), "arm64"), 2);

    let s = parse(GO_GENERATED).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.mode, s.nodes[0].replicas), (Mode::Exec, 1));
    assert!(warnings(GO_GENERATED).is_empty());
}

#[test]
fn go_typos_get_a_precise_error() {
    let e = errors(HELLO);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "CPUCores");
    assert_eq!(e[0].message, "unknown key (did you mean `cpuCores`?)");
    assert_eq!((e[0].line, e[0].column), (Some(28), Some(1)));
    assert_eq!(
        e[0].to_string(),
        "CPUCores: unknown key (did you mean `cpuCores`?) (line 28, column 1)"
    );
    // Lenient (a spec already stored by the Go CLI): a warning.
    let p = parse_detailed(HELLO, Strictness::Lenient).unwrap();
    assert!(p.warnings.iter().any(|w| w.path == "CPUCores"));
    assert_eq!(p.spec.cpu_cores, 0.0);

    let e = errors(HELLO_JAIL);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "mode");
    assert!(e[0].message.contains("FreeBSD only"), "{}", e[0].message);
    assert_eq!(e[0].line, Some(3));
}

/// (yaml, path, message fragment, line).
const RULES: &[(&str, &str, &str, Option<usize>)] = &[
    ("tag: v1\n", "name", "required", None),
    (
        "name: a.b\ntag: v1\n",
        "name",
        "not a valid app name",
        Some(1),
    ),
    (
        "name: -a\ntag: v1\n",
        "name",
        "not a valid app name",
        Some(1),
    ),
    ("name: a\n", "tag", "required", None),
    ("name: a\ntag: v 1\n", "tag", "not a valid tag", Some(2)),
    (
        "name: a\ntag: v1\nmode: Landlock\n",
        "mode",
        "did you mean \"landlock\"",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmode: exce\n",
        "mode",
        "did you mean \"exec\"",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmode: jail\n",
        "mode",
        "FreeBSD only",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnodes:\n  - name: n1\n    replicas: 1\n  - name: n2\n    replicas: 0\n",
        "nodes[1].replicas",
        "must be > 0",
        Some(7),
    ),
    (
        "name: a\ntag: v1\nnodes: [{name: n1, replicas: 1001}]\n",
        "nodes[0].replicas",
        "at most 1000",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnodes: [{replicas: 1}]\n",
        "nodes[0].name",
        "required",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnodes: [{name: n1, replicas: 1}, {name: n1, replicas: 2}]\n",
        "nodes[1].name",
        "already listed at nodes[0]",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnodes: [{name: n.example.com, replicas: 1}]\n",
        "nodes[0].name",
        "not a valid node id",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnodes:\n  - name: n1\n    replicas: two\n",
        "nodes[0].replicas",
        "invalid type",
        Some(5),
    ),
    (
        "name: a\ntag: v1\nnodes:\n  - name: n1\n    replica: 2\n",
        "nodes[0].replica",
        "did you mean `replicas`",
        Some(5),
    ),
    (
        "name: a\ntag: v1\nnodeSelector: {arch: x86_64}\n",
        "nodeSelector.arch[0]",
        "did you mean \"amd64\"",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnodeSelector: {labels: {zone: a}, replicas: 0}\n",
        "nodeSelector.replicas",
        "must be > 0",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nlabels: {-x: y}\n",
        "labels.-x",
        "invalid label key",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nenv:\n  - name: A\n    value: b\n    valueFromSecret: S\n",
        "env[0]",
        "not both",
        Some(4),
    ),
    (
        "name: a\ntag: v1\nenv: [{name: A=B}]\n",
        "env[0].name",
        "not a valid variable name",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nenv: [{value: x}]\n",
        "env[0].name",
        "required",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nenv: [{name: NARUN_NODE_ID, value: x}]\n",
        "env[0].name",
        "set by narun",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nenv: [{name: A}, {name: A}]\n",
        "env[1].name",
        "already set at env[0]",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nenv: [{name: A, valueFromSecret: a b}]\n",
        "env[0].valueFromSecret",
        "not a valid secret name",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmounts: [{path: ../x, source: {objectStore: f}}]\n",
        "mounts[0].path",
        "without '..'",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmounts: [{path: /etc/x, source: {objectStore: f}}]\n",
        "mounts[0].path",
        "must be relative",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmounts: [{path: x}]\n",
        "mounts[0].source.objectStore",
        "required",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmounts: [{path: x, source: {objectStore: a/b}}]\n",
        "mounts[0].source.objectStore",
        "not a valid file name",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmounts: [{path: x, source: {objectstore: f}}]\n",
        "mounts[0].source.objectstore",
        "did you mean `objectStore`",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmode: landlock\nlandlock: {paths: [{path: /etc, modes: rz}]}\n",
        "landlock.paths[0].modes",
        "invalid mode 'z'",
        Some(4),
    ),
    (
        "name: a\ntag: v1\nmode: landlock\nlandlock: {paths: [{path: etc, modes: r}]}\n",
        "landlock.paths[0].path",
        "must be absolute",
        Some(4),
    ),
    (
        "name: a\ntag: v1\nmode: landlock\nlandlock: {paths: [{path: /etc}]}\n",
        "landlock.paths[0].modes",
        "required",
        Some(4),
    ),
    (
        "name: a\ntag: v1\nnonet:\n  localPorts:\n    - port: 53\n",
        "nonet.localPorts[0].port",
        "expected 1025..65535",
        Some(5),
    ),
    (
        "name: a\ntag: v1\nnonet: {localPorts: [{port: 5353, protocol: sctp}]}\n",
        "nonet.localPorts[0].protocol",
        "expected tcp or udp",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnonet: {localPorts: [{port: 70000}]}\n",
        "nonet.localPorts[0].port",
        "invalid value",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmetrics: {port: 9000, path: metrics}\n",
        "metrics.path",
        "must start with '/'",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmemoryMB: 128\nmemoryMaxMB: 64\n",
        "memoryMaxMB",
        "less than memoryMB",
        Some(4),
    ),
    (
        "name: a\ntag: v1\ncpuCores: -1\n",
        "cpuCores",
        ">= 0",
        Some(3),
    ),
    (
        "name: a\ntag: v1\ncpuCores: lots\n",
        "cpuCores",
        "expected a number",
        Some(3),
    ),
    (
        "name: a\ntag: v1\ntasksMax: 0\n",
        "tasksMax",
        "must be > 0",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnetwork: bridge\n",
        "network",
        "expected one of host, none",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnetwork: host\nnonet: {localPorts: [{port: 4222}]}\n",
        "nonet.localPorts",
        "network: none",
        Some(4),
    ),
    (
        "name: a\ntag: v1\nnetworkNamespacePath: netns/blue\n",
        "networkNamespacePath",
        "absolute",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnetwork: none\nnetworkNamespacePath: /run/netns/b\n",
        "networkNamespacePath",
        "conflicts",
        Some(4),
    ),
    (
        "name: a\ntag: v1\nrestart: {policy: sometimes}\n",
        "restart.policy",
        "expected one of always, on-failure, never",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nrestart: {policy: on_failure}\n",
        "restart.policy",
        "write \"on-failure\"",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nrestart: {delay: soon}\n",
        "restart.delay",
        "not a duration",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nrestart: {delay: 2h}\n",
        "restart.delay",
        "at most 1h",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nstopTimeout: 0s\n",
        "stopTimeout",
        "between 1s and 1h",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: 9lives\n",
        "user",
        "not a valid user name",
        Some(3),
    ),
    // Root in any spelling but its name, and every non-canonical uid.
    (
        "name: a\ntag: v1\nuser: \"0\"\n",
        "user",
        "uid 0 is root",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: 0\n",
        "user",
        "uid 0 is root",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"00\"\n",
        "user",
        "leading zero",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"0000\"\n",
        "user",
        "leading zero",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"01000\"\n",
        "user",
        "leading zero",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \" 0\"\n",
        "user",
        "not a valid user",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"0 \"\n",
        "user",
        "not a valid user",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"+0\"\n",
        "user",
        "not a valid user",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"-0\"\n",
        "user",
        "not a valid user",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"root \"\n",
        "user",
        "not a valid user",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"0x0\"\n",
        "user",
        "not a valid user",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"4294967296\"\n",
        "user",
        "not a 32-bit uid",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"4294967295\"\n",
        "user",
        "reserved",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nuser: \"65535\"\n",
        "user",
        "reserved",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nargs: {a: 1}\n",
        "args",
        "invalid type",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nCPUCores: 1\n",
        "CPUCores",
        "did you mean `cpuCores`",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nmemoryMb: 1\n",
        "memoryMb",
        "did you mean `memoryMB`",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nname: b\n",
        "name",
        "duplicate key",
        Some(3),
    ),
    (
        "name: a\ntag: v1\nnodes: [{name: n, replicas: 1, name: m}]\n",
        "nodes[0].name",
        "duplicate key",
        Some(3),
    ),
    ("name: a\ntag: [v1\n", "", "", Some(3)),
    ("", "", "the spec is empty", None),
    ("- a\n- b\n", "", "expected a mapping", Some(1)),
];

#[test]
fn every_rule_names_its_field_and_line() {
    for (yaml, path, fragment, line) in RULES {
        let e = errors(yaml);
        let hit = e
            .iter()
            .find(|i| i.path == *path && i.message.contains(fragment))
            .unwrap_or_else(|| {
                panic!("{yaml:?}: no error at {path:?} containing {fragment:?}: {e:#?}")
            });
        assert_eq!(hit.line, *line, "{yaml:?}: {hit}");
        assert_eq!(hit.severity, Severity::Error);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = "name: a.b\ntag: v1\nmode: exce\nnodes:\n  - name: n1\n    replicas: two\n  - name: n2\n    replicas: 0\n    zone: x\nCPUCores: 1\nstopTimeout: forever\n";
    let e = errors(yaml);
    let paths: Vec<&str> = e.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "name",
            "mode",
            "nodes[0].replicas",
            "nodes[1].replicas",
            "nodes[1].zone",
            "CPUCores",
            "stopTimeout"
        ],
        "{e:#?}"
    );
    // Sorted by line; the defaulted replicas of nodes[0] are not reported twice.
    assert!(e.windows(2).all(|w| w[0].line <= w[1].line));
    let text = SpecErrors {
        errors: e,
        warnings: vec![],
    }
    .to_string();
    assert!(
        text.starts_with("invalid spec (7 errors):\n  name: "),
        "{text}"
    );
}

#[test]
fn scalars_decode_as_go_does() {
    let s = parse(&format!(
        "{BASE}env:\n  - name: PORT\n    value: 8080\n  - name: ON\n    value: true\n  - name: EMPTY\n    value:\ncpuCores: .5\nlabels: {{tier: 1}}\nargs: [1.50, -v]\n"
    ))
    .unwrap();
    assert_eq!(s.env[0].value, "8080");
    assert_eq!(s.env[1].value, "true");
    assert_eq!(s.env[2].value, "");
    assert_eq!(s.cpu_cores, 0.5);
    assert_eq!(s.labels["tier"], "1");
    assert_eq!(s.args, vec!["1.50", "-v"]);
    // Sections written with no value are empty, as in Go.
    let s = parse(&format!(
        "{BASE}env:\nmounts:\nlandlock:\nrestart:\nnonet:\n  localPorts:\n"
    ))
    .unwrap();
    assert!(s.env.is_empty() && s.mounts.is_empty() && s.nonet.local_ports.is_empty());
    assert_eq!(s.restart, Restart::default());
    let s = parse("name: app\ntag: 1.10\n").unwrap();
    assert_eq!(s.tag, "1.10", "the source text, as Go's yaml.v3 gives it");
    let s = parse("name: 0123\ntag: 1.0\n").unwrap();
    assert_eq!((s.name.as_str(), s.tag.as_str()), ("0123", "1.0"));
}

#[test]
fn new_fields_and_defaults() {
    let s = parse(BASE).unwrap();
    assert_eq!(s.mode, Mode::Exec);
    assert_eq!(s.network(), Network::Host);
    assert_eq!(s.restart, Restart::default());
    assert_eq!(s.restart.policy, RestartPolicy::OnFailure);
    assert_eq!(s.restart.delay.0, Duration::from_secs(2));
    assert_eq!(
        (s.restart.max_restarts, s.restart.window.0),
        (5, Duration::from_secs(600))
    );
    assert_eq!(s.stop_timeout.0, Duration::from_secs(10));
    assert_eq!(s.tasks_max, None);

    let s = parse(&format!(
        "{BASE}description: the hello app\nlabels: {{team: edge}}\nrestart:\n  policy: always\n  delay: 500ms\n  maxRestarts: 0\n  window: 1m30s\nstopTimeout: 30\ntasksMax: 64\nnetwork: none\nnodeSelector:\n  labels: {{zone: eu}}\n  arch: arm64\n  replicas: 3\n"
    ))
    .unwrap();
    assert_eq!(s.description, "the hello app");
    assert_eq!(s.restart.policy, RestartPolicy::Always);
    assert_eq!(s.restart.delay.0, Duration::from_millis(500));
    assert_eq!(s.restart.window.0, Duration::from_secs(90));
    assert_eq!(s.stop_timeout.0, Duration::from_secs(30));
    assert_eq!(s.tasks_max, Some(64));
    assert_eq!(s.network(), Network::None);
    let sel = s.node_selector.as_ref().unwrap();
    assert_eq!(sel.arch, vec!["arm64"]);
}

#[test]
fn nats_access_and_its_rules() {
    let s = parse(&format!(
        "{BASE}nats:\n  publish: [billing, \"orders.*.created\"]\n  subscribe: [\"events.>\"]\n  kv: [catalog]\n"
    ))
    .unwrap();
    assert_eq!(s.nats.publish, ["billing", "orders.*.created"]);
    assert_eq!(s.nats.subscribe, ["events.>"]);
    assert_eq!(s.nats.kv, ["catalog"]);
    assert_ne!(
        s.node_hash("n1", &Default::default(), "amd64", "d"),
        parse(BASE)
            .unwrap()
            .node_hash("n1", &Default::default(), "amd64", "d"),
        "a change of access replaces the replicas"
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "nats: {publish: [\"$JS.API.>\"]}",
            "nats.publish[0]",
            "system subjects",
        ),
        (
            "nats: {subscribe: [\">\"]}",
            "nats.subscribe[0]",
            "leading wildcards",
        ),
        (
            "nats: {subscribe: [\"_INBOX.>\"]}",
            "nats.subscribe[0]",
            "inboxes",
        ),
        (
            "nats: {publish: [\"a..b\"]}",
            "nats.publish[0]",
            "empty token",
        ),
        (
            "nats: {publish: [\"a.>.b\"]}",
            "nats.publish[0]",
            "last token",
        ),
        (
            "nats: {publish: [\"a.b*\"]}",
            "nats.publish[0]",
            "whole tokens",
        ),
        ("nats: {publish: [\"a b\"]}", "nats.publish[0]", "no spaces"),
        (
            "nats: {kv: [narun-secrets]}",
            "nats.kv[0]",
            "narun's own bucket",
        ),
        (
            "nats: {kv: [\"a.b\"]}",
            "nats.kv[0]",
            "not a KV bucket name",
        ),
        ("nats: {pub: [a]}", "nats.pub", "unknown key"),
    ];
    for (extra, path, msg) in cases {
        let e = errors(&format!("{BASE}{extra}\n"));
        assert!(
            e.iter().any(|i| i.path == *path && i.message.contains(msg)),
            "{extra}: {e:?}"
        );
        assert!(e.iter().all(|i| i.line.is_some()), "{extra}: {e:?}");
    }
}

#[test]
fn secret_files_and_their_rules() {
    let s = parse(&format!(
        "{BASE}secrets:\n  - name: db/password\n  - name: api\n    path: token.txt\nrestartOnSecretChange: false\nmode: landlock\nlandlock: {{bestEffort: true}}\n"
    ))
    .unwrap();
    assert_eq!(s.secrets.len(), 2);
    assert_eq!(s.secrets[0].file_name(), "db_password");
    assert_eq!(s.secrets[1].file_name(), "token.txt");
    assert!(!s.restart_on_secret_change);
    assert!(s.landlock.best_effort);
    assert!(
        parse(BASE).unwrap().restart_on_secret_change,
        "default true"
    );

    let cases: &[(&str, &str, &str)] = &[
        ("secrets: [{path: x}]", "secrets[0].name", "required"),
        (
            "secrets: [{name: 'a b'}]",
            "secrets[0].name",
            "not a valid secret name",
        ),
        (
            "secrets: [{name: a, path: ../x}]",
            "secrets[0].path",
            "plain file name",
        ),
        (
            "secrets: [{name: a, path: .hidden}]",
            "secrets[0].path",
            "plain file name",
        ),
        (
            "secrets: [{name: a}, {name: b, path: a}]",
            "secrets[1].path",
            "already used by secrets[0]",
        ),
        (
            "secrets: [{name: a, file: x}]",
            "secrets[0].file",
            "unknown key",
        ),
    ];
    for (extra, path, msg) in cases {
        let e = errors(&format!("{BASE}{extra}\n"));
        assert!(
            e.iter().any(|i| i.path == *path && i.message.contains(msg)),
            "{extra}: {e:?}"
        );
        assert!(e.iter().all(|i| i.line.is_some()), "{extra}: {e:?}");
    }
}

#[test]
fn warnings_for_ignored_settings() {
    let w = warnings(&format!(
        "{BASE}command: hello\ncgroupParent: system.slice\nlandlock: {{tmp: true}}\nmetrics: {{path: /m}}\n"
    ));
    let paths: Vec<&str> = w.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["command", "cgroupParent", "landlock", "metrics.path"],
        "{w:?}"
    );
    let w = warnings("name: a\ntag: v1\n");
    assert_eq!(w[0].path, "nodes");
    assert!(w[0].message.contains("runs nowhere"));
    let w = warnings("name: a\ntag: v1\nnodeSelector: {}\n");
    assert!(w[0].message.contains("every node"), "{w:?}");
}

#[test]
fn replicas_by_name_labels_and_arch() {
    let s = parse(
        "name: a\ntag: v1\nnodes: [{name: n1, replicas: 3}]\nnodeSelector: {labels: {zone: eu}, arch: [amd64, arm64], replicas: 2}\n",
    )
    .unwrap();
    let eu: BTreeMap<String, String> = [("zone".into(), "eu".into())].into();
    let us: BTreeMap<String, String> = [("zone".into(), "us".into())].into();
    assert_eq!(s.replicas_for("n1", &us, "riscv64"), 3, "named nodes win");
    assert_eq!(s.replicas_for("n2", &eu, "arm64"), 2);
    assert_eq!(s.replicas_for("n2", &eu, "riscv64"), 0, "arch not selected");
    assert_eq!(s.replicas_for("n2", &us, "amd64"), 0, "label mismatch");
    assert_eq!(s.replicas_for("n2", &BTreeMap::new(), "amd64"), 0);
    let s = parse("name: a\ntag: v1\nnodes: [{name: n1, replicas: 1}]\n").unwrap();
    assert_eq!(s.replicas_for("n2", &eu, "amd64"), 0);
}

#[test]
fn node_hash_covers_what_instances_run_and_nothing_else() {
    let none = BTreeMap::new();
    let d1 = "SHA-256=AAAA";
    let base = parse(
        "name: a\ntag: v1\nnodes: [{name: n1, replicas: 1}, {name: n2, replicas: 1}]\nenv: [{name: A, value: b}]\n",
    )
    .unwrap();
    let h = |s: &ServiceSpec, arch: &str, digest: &str| s.node_hash("n1", &none, arch, digest);
    let h0 = h(&base, "amd64", d1);
    assert_eq!(h0.len(), 16);
    assert_eq!(h0, h(&base, "amd64", d1), "stable");
    // Pinned: a change here restarts every instance of every fleet on upgrade.
    assert_eq!(h0, "deb48489e2ff8d68");

    let same = |yaml: &str| {
        let s = parse(yaml).unwrap();
        assert_eq!(h(&s, "amd64", d1), h0, "{yaml}");
    };
    let mut differs_later: Vec<&str> = Vec::new();
    // Scaling n2 (or n1), selectors, metadata, ignored Go keys: no restart (R4).
    same("name: a\ntag: v1\nnodes: [{name: n1, replicas: 1}, {name: n2, replicas: 5}]\nenv: [{name: A, value: b}]\n");
    same("name: a\ntag: v1\nnodes: [{name: n1, replicas: 4}]\nenv: [{name: A, value: b}]\n");
    same("name: a\ntag: v1\nnodeSelector: {arch: amd64}\ndescription: x\nlabels: {a: b}\nenv: [{name: A, value: b}]\ncgroupParent: x\ncommand: y\n");
    // Defaults written out change nothing either.
    same("name: a\ntag: v1\nmode: exec\nstopTimeout: 10s\nrestart: {policy: on-failure, delay: 2s}\nenv: [{name: A, value: b}]\n");
    same("name: a\ntag: v1\nrestartOnSecretChange: true\nenv: [{name: A, value: b}]\n");
    differs_later
        .push("name: a\ntag: v1\nrestartOnSecretChange: false\nenv: [{name: A, value: b}]\n");
    differs_later.push("name: a\ntag: v1\nsecrets: [{name: db}]\nenv: [{name: A, value: b}]\n");

    let differs = |yaml: &str| {
        let s = parse(yaml).unwrap();
        assert_ne!(h(&s, "amd64", d1), h0, "{yaml}");
    };
    differs("name: a\ntag: v2\nenv: [{name: A, value: b}]\n");
    differs("name: a\ntag: v1\nenv: [{name: A, value: c}]\n");
    differs("name: a\ntag: v1\nenv: [{name: A, value: b}]\nargs: [-v]\n");
    differs("name: a\ntag: v1\nenv: [{name: A, value: b}]\nmemoryMaxMB: 64\n");
    differs("name: a\ntag: v1\nenv: [{name: A, value: b}]\nstopTimeout: 11s\n");
    for yaml in differs_later {
        differs(yaml);
    }
    // A new upload of the same tag restarts (R5); so does another arch.
    assert_ne!(h(&base, "amd64", "SHA-256=BBBB"), h0);
    assert_ne!(h(&base, "arm64", d1), h0);
}

#[test]
fn name_rules() {
    for ok in ["hello", "hello-app", "a_b", "A1", "x"] {
        assert!(valid_app_name(ok), "{ok}");
    }
    for bad in [
        "",
        "a.b",
        "a b",
        "a*",
        "a>",
        "-a",
        "a/b",
        "é",
        &"a".repeat(64),
    ] {
        assert!(!valid_app_name(bad), "{bad}");
    }
    assert!(valid_secret_name("db/password=1.x"));
    assert!(!valid_secret_name(".a") && !valid_secret_name("a b") && !valid_secret_name(""));
    assert!(valid_file_name("config.json") && valid_file_name("a b"));
    assert!(!valid_file_name("a/b") && !valid_file_name("..") && !valid_file_name("a\nb"));
    assert!(valid_tag("v1.2.3+build-4") && !valid_tag("v1 2") && !valid_tag("-v"));
    assert_eq!(split_instance_id("hello-app-12"), Some(("hello-app", 12)));
    assert_eq!(split_instance_id("hello"), None);
    assert_eq!(instance_id("hello", 0), "hello-0");
}

#[test]
fn known_keys_match_the_types() {
    // Every key a fully populated spec serializes must be in the tables.
    let s = parse(EVERY_FIELD).unwrap();
    let mut full = s.clone();
    full.description = "d".into();
    full.labels.insert("a".into(), "b".into());
    full.node_selector = Some(NodeSelector {
        labels: [("z".into(), "e".into())].into(),
        arch: vec!["amd64".into()],
        replicas: 2,
    });
    full.tasks_max = Some(3);
    full.network = Some(Network::None);
    full.network_namespace_path = "/x".into();
    full.command = "c".into();
    full.restart.max_restarts = 1;
    full.stop_timeout = SpecDuration::from_secs(3);
    full.landlock.stdio = true;
    full.landlock.tty = true;
    full.landlock.vminfo = true;
    full.landlock.certs = true;
    full.landlock.best_effort = true;
    full.secrets = vec![SecretFile {
        name: "s".into(),
        path: "p".into(),
    }];
    full.restart_on_secret_change = false;
    full.health = Health {
        notify: Some(false),
        stable_period: Some(SpecDuration::from_secs(1)),
        exec: vec!["/bin/true".into()],
        tcp: Some(1),
        http: Some(crate::spec::HttpCheck {
            port: 1,
            path: "/".into(),
        }),
        interval: Some(SpecDuration::from_secs(1)),
        timeout: Some(SpecDuration::from_secs(1)),
    };
    full.progress_deadline = Some(SpecDuration::from_secs(30));
    full.http = Some(crate::spec::HttpProxy { port: 8080 });
    full.nats = crate::spec::NatsAccess {
        publish: vec!["billing".into()],
        subscribe: vec!["events.>".into()],
        kv: vec!["catalog".into()],
    };
    let v = serde_norway::to_value(&full).unwrap();
    fn walk(v: &serde_norway::Value, parent: &str) {
        match v {
            serde_norway::Value::Mapping(m) => {
                for (k, child) in m {
                    let k = k.as_str().unwrap();
                    if parent == "labels" || parent.ends_with(".labels") {
                        continue;
                    }
                    assert!(
                        parse::known_keys(parent).contains(&k),
                        "{parent:?} does not list {k:?}"
                    );
                    walk(child, &positions::join_key(parent, k));
                }
            }
            serde_norway::Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &positions::join_index(parent, i));
                }
            }
            _ => {}
        }
    }
    walk(&v, "");
    assert_eq!(
        parse::known_keys("").len(),
        v.as_mapping().unwrap().len(),
        "every root key is serialized by the full spec"
    );
    // And the serialized spec parses back to itself.
    full.network_namespace_path.clear();
    full.health.tcp = None; // one health check at a time
    full.health.http = None;
    full.http = None; // a pinned port with several replicas
    let back = parse_detailed(&serde_norway::to_string(&full).unwrap(), Strictness::Strict)
        .unwrap()
        .spec;
    assert_eq!(back.restart, full.restart);
    assert_eq!(back.node_selector, full.node_selector);
}

#[test]
fn proxy_mode_ports() {
    let s = parse(&format!("{BASE}http: {{}}\n")).unwrap();
    assert_eq!(s.http, Some(crate::spec::HttpProxy { port: 0 }));
    let s = parse(&format!("{BASE}http: {{port: 8080}}\n")).unwrap();
    assert_eq!(s.http.unwrap().port, 8080);
    for (yaml, path, frag) in [
        (
            "name: web\ntag: v1\nnodes: [{name: n1, replicas: 2}]\nhttp: {port: 8080}\n",
            "http.port",
            "only one replica",
        ),
        (
            "name: web\ntag: v1\nnodes: [{name: n1}]\nhttp: {port: 70000}\n",
            "http.port",
            "",
        ),
        (
            "name: web\ntag: v1\nnodes: [{name: n1}]\nhttp: {}\nhealth: {notify: false}\n",
            "health.notify",
            "proxy mode",
        ),
        (
            "name: web\ntag: v1\nnodes: [{name: n1}]\nhttp: {host: x}\n",
            "http.host",
            "",
        ),
    ] {
        let e = errors(yaml);
        assert!(
            e.iter().any(|i| i.path == path && i.message.contains(frag)),
            "{yaml}: {e:#?}"
        );
    }
    // Two replicas with picked ports are fine.
    parse("name: web\ntag: v1\nnodes: [{name: n1, replicas: 2}]\nhttp: {}\n").unwrap();
}

#[test]
fn health_and_progress_deadline() {
    let s = parse(&format!(
        "{BASE}health: {{notify: true, stablePeriod: 500ms}}\nprogressDeadline: 2m\n"
    ))
    .unwrap();
    assert_eq!(s.health.notify, Some(true));
    assert_eq!(s.stable_period(), Duration::from_millis(500));
    assert_eq!(s.progress_deadline(), Duration::from_secs(120));
    let d = parse(BASE).unwrap();
    assert_eq!(
        (d.health.notify, d.stable_period(), d.progress_deadline()),
        (None, Duration::from_secs(2), Duration::from_secs(60))
    );
    for (yaml, path, frag) in [
        (
            "progressDeadline: 0s\n",
            "progressDeadline",
            "between 1s and 1h",
        ),
        (
            "progressDeadline: 2h\n",
            "progressDeadline",
            "between 1s and 1h",
        ),
        (
            "health: {stablePeriod: 11m}\n",
            "health.stablePeriod",
            "at most 10m",
        ),
        (
            "progressDeadline: 5s\nhealth: {stablePeriod: 5s}\n",
            "health.stablePeriod",
            "not shorter than progressDeadline",
        ),
        ("health: {notify: maybe}\n", "health.notify", ""),
        ("health: {readyAfter: 1s}\n", "health.readyAfter", ""),
        (
            "health: {tcp: 80, http: {port: 80}}\n",
            "health",
            "give one health check",
        ),
        (
            "health: {exec: [curl, -f]}\n",
            "health.exec",
            "absolute path",
        ),
        ("health: {tcp: 0}\n", "health.tcp", "1-65535"),
        ("health: {tcp: 70000}\n", "health.tcp", ""),
        ("health: {http: {port: 0}}\n", "health.http.port", "1-65535"),
        (
            "health: {http: {port: 80, path: healthz}}\n",
            "health.http.path",
            "must start with /",
        ),
        (
            "health: {http: {port: 80, path: \"/a b\"}}\n",
            "health.http.path",
            "no spaces",
        ),
        (
            "health: {http: {port: 80, host: x}}\n",
            "health.http.host",
            "",
        ),
        (
            "health: {interval: 1s}\n",
            "health.interval",
            "applies to a health check",
        ),
        (
            "health: {tcp: 80, timeout: 10ms}\n",
            "health.timeout",
            "between 100ms and 1m",
        ),
        (
            "health: {tcp: 80, interval: 2m}\n",
            "health.interval",
            "between 100ms and 1m",
        ),
    ] {
        let e = errors(&format!("{BASE}{yaml}"));
        assert!(
            e.iter().any(|i| i.path == path && i.message.contains(frag)),
            "{yaml}: {e:#?}"
        );
    }
    // Defaults are not serialized: existing hashes do not change.
    let h = |y: &str| {
        parse(y)
            .unwrap()
            .node_hash("n1", &BTreeMap::new(), "amd64", "d")
    };
    assert_eq!(h(BASE), h(&format!("{BASE}health: {{}}\n")));
    // A check changes the hash (the units change).
    assert_ne!(h(BASE), h(&format!("{BASE}health: {{tcp: 80}}\n")));
    let s = parse(&format!(
        "{BASE}health: {{http: {{port: 8080, path: /healthz}}, interval: 500ms, timeout: 2s}}\n"
    ))
    .unwrap();
    assert!(s.health.has_check());
    assert_eq!(s.health.http.as_ref().unwrap().path, "/healthz");
    assert_eq!(
        s.health.interval,
        Some(SpecDuration(Duration::from_millis(500)))
    );
}

#[test]
fn user_root_by_name_is_a_warning_and_plain_uids_parse() {
    let w = warnings(&format!("{BASE}user: root\n"));
    assert_eq!(w[0].path, "user", "{w:?}");
    assert!(w[0].message.contains("--allow-root-apps"), "{w:?}");
    for (user, want) in [
        ("akh", UserRef::Name("akh".into())),
        ("_svc-1", UserRef::Name("_svc-1".into())),
        ("1000", UserRef::Uid(1000)),
        ("0", UserRef::Uid(0)),
        ("4294967294", UserRef::Uid(4294967294)),
    ] {
        assert_eq!(parse_user(user), Ok(want), "{user:?}");
    }
    assert!(parse_user("0").unwrap().is_root());
    assert!(parse_user("root").unwrap().is_root());
    assert!(!parse_user("rooty").unwrap().is_root());
    for bad in [
        "",
        "00",
        " 0",
        "0\n",
        "+1",
        "１",
        "r\u{0}",
        "a b",
        "-x",
        "x".repeat(33).as_str(),
    ] {
        assert!(parse_user(bad).is_err(), "{bad:?}");
    }
}

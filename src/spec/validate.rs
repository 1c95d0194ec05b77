//! The validation rules, one per field, each naming the field and what was
//! expected. Go's rules (`ParseServiceSpec`) are all here, some stricter.

use std::collections::HashMap;
use std::path::{Component, Path};
use std::time::Duration;

use super::de::did_you_mean;
use super::parse::Severity;
use super::{
    parse_user, valid_app_name, valid_file_name, valid_label_key, valid_node_id, valid_secret_name,
    valid_tag, Mode, Network, RestartPolicy, ServiceSpec, SpecDuration, UserRef, KNOWN_ARCHES,
    MAX_APP_NAME_LEN, MAX_REPLICAS, SECRETS_DIR,
};
use crate::limits::{
    MAX_ARGS, MAX_ARG_BYTES, MAX_ENV, MAX_LABELS, MAX_LANDLOCK_PATHS, MAX_LOCAL_PORTS, MAX_MOUNTS,
    MAX_NODES, MAX_PATH_BYTES, MAX_SECRET_FILES, MAX_SMALL_LIST,
};

type Found = Vec<(Severity, String, String)>;

fn err(out: &mut Found, path: impl Into<String>, msg: impl Into<String>) {
    out.push((Severity::Error, path.into(), msg.into()));
}

fn warn(out: &mut Found, path: impl Into<String>, msg: impl Into<String>) {
    out.push((Severity::Warning, path.into(), msg.into()));
}

/// Is the list (or mapping) at `path` at most `max` entries long? Reported
/// when it is not, and its entries are then not checked one by one.
fn within(out: &mut Found, path: &str, len: usize, max: usize) -> bool {
    if len > max {
        err(out, path, format!("{len} entries, at most {max}"));
    }
    len <= max
}

/// Why the file system path `value` is too long, if it is.
fn long_path(value: &str) -> Option<String> {
    (value.len() > MAX_PATH_BYTES).then(|| {
        format!(
            "{} bytes long, at most {MAX_PATH_BYTES} (Linux's PATH_MAX)",
            value.len()
        )
    })
}

/// Is the file system path at `path` at most [`MAX_PATH_BYTES`] long?
/// Reported when it is not.
fn path_fits(out: &mut Found, path: &str, value: &str) -> bool {
    match long_path(value) {
        Some(why) => {
            err(out, path, why);
            false
        }
        None => true,
    }
}

const NAME_RULE: &str = "use ASCII letters, digits, '-' and '_', not starting with '-'";

/// Check `spec`, appending (severity, path, message).
pub(crate) fn validate(spec: &ServiceSpec, out: &mut Found) {
    // name, tag
    if spec.name.is_empty() {
        err(out, "name", "required: the app name (also its KV key)");
    } else if !valid_app_name(&spec.name) {
        err(
            out,
            "name",
            format!(
                "{:?} is not a valid app name: {NAME_RULE}, at most {MAX_APP_NAME_LEN} characters \
                 (it is a NATS subject token, a KV key and a systemd instance name)",
                spec.name
            ),
        );
    }
    if spec.tag.is_empty() {
        err(out, "tag", "required: the binary tag (e.g. v1.2.0)");
    } else if !valid_tag(&spec.tag) {
        err(
            out,
            "tag",
            format!(
                "{:?} is not a valid tag: use ASCII letters, digits, '.', '_', '+' and '-' \
                 (at most 128, not starting with '-' or '.')",
                spec.tag
            ),
        );
    }
    if spec.description.chars().count() > 1024 {
        err(out, "description", "longer than 1024 characters");
    }
    labels(out, "labels", &spec.labels);

    // placement
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let nodes: &[_] = if within(out, "nodes", spec.nodes.len(), MAX_NODES) {
        &spec.nodes
    } else {
        &[]
    };
    for (i, n) in nodes.iter().enumerate() {
        let p = format!("nodes[{i}]");
        if n.name.is_empty() {
            err(out, format!("{p}.name"), "required: the node id");
        } else if !valid_node_id(&n.name) {
            err(
                out,
                format!("{p}.name"),
                format!(
                    "{:?} is not a valid node id: {NAME_RULE} (a dot would split the \
                     `logs.<app>.<node>` subject)",
                    n.name
                ),
            );
        } else if let Some(first) = seen.insert(&n.name, i) {
            err(
                out,
                format!("{p}.name"),
                format!("node {:?} is already listed at nodes[{first}]", n.name),
            );
        }
        replicas(out, &format!("{p}.replicas"), n.replicas);
    }
    if let Some(sel) = &spec.node_selector {
        labels(out, "nodeSelector.labels", &sel.labels);
        let arch: &[_] = if within(out, "nodeSelector.arch", sel.arch.len(), MAX_SMALL_LIST) {
            &sel.arch
        } else {
            &[]
        };
        for (i, a) in arch.iter().enumerate() {
            if !KNOWN_ARCHES.contains(&a.as_str()) {
                err(
                    out,
                    format!("nodeSelector.arch[{i}]"),
                    format!(
                        "{a:?} is not a known architecture: expected one of {}{}",
                        KNOWN_ARCHES.join(", "),
                        arch_hint(a)
                    ),
                );
            }
        }
        replicas(out, "nodeSelector.replicas", sel.replicas);
        if sel.labels.is_empty() && sel.arch.is_empty() {
            warn(
                out,
                "nodeSelector",
                "no labels and no arch: every node runs this app",
            );
        }
    }
    if spec.nodes.is_empty() && spec.node_selector.is_none() {
        warn(
            out,
            "nodes",
            "no node targeted: add `nodes` or `nodeSelector` (the app runs nowhere)",
        );
    }

    // process
    let args: &[_] = if within(out, "args", spec.args.len(), MAX_ARGS) {
        &spec.args
    } else {
        &[]
    };
    for (i, a) in args.iter().enumerate() {
        if a.contains('\0') {
            err(out, format!("args[{i}]"), "contains a NUL byte");
        } else if a.len() > MAX_ARG_BYTES {
            err(
                out,
                format!("args[{i}]"),
                format!(
                    "{} bytes long, at most {MAX_ARG_BYTES} (Linux's limit on one argument)",
                    a.len()
                ),
            );
        }
    }
    let mut env_seen: HashMap<&str, usize> = HashMap::new();
    let env: &[_] = if within(out, "env", spec.env.len(), MAX_ENV) {
        &spec.env
    } else {
        &[]
    };
    for (i, e) in env.iter().enumerate() {
        let p = format!("env[{i}]");
        let len = e.name.len() + 1 + e.value.len();
        if len > MAX_ARG_BYTES {
            err(
                out,
                &p,
                format!(
                    "NAME=value is {len} bytes long, at most {MAX_ARG_BYTES} (Linux's limit on \
                     one environment string)"
                ),
            );
        }
        if e.name.is_empty() {
            err(out, format!("{p}.name"), "required: the variable name");
        } else if e.name.contains(['=', '\0']) || e.name.chars().any(char::is_whitespace) {
            err(
                out,
                format!("{p}.name"),
                format!(
                    "{:?} is not a valid variable name: no '=', whitespace or NUL",
                    e.name
                ),
            );
        } else if e.name.starts_with("NARUN_") {
            err(
                out,
                format!("{p}.name"),
                format!("{:?}: NARUN_* variables are set by narun itself", e.name),
            );
        } else if let Some(first) = env_seen.insert(&e.name, i) {
            err(
                out,
                format!("{p}.name"),
                format!("{:?} is already set at env[{first}]", e.name),
            );
        }
        if !e.value.is_empty() && !e.value_from_secret.is_empty() {
            err(out, &p, "set either `value` or `valueFromSecret`, not both");
        }
        if e.value.contains('\0') {
            err(out, format!("{p}.value"), "contains a NUL byte");
        }
        if !e.value_from_secret.is_empty() && !valid_secret_name(&e.value_from_secret) {
            err(
                out,
                format!("{p}.valueFromSecret"),
                format!(
                    "{:?} is not a valid secret name: letters, digits, '-', '/', '_', '=', '.'",
                    e.value_from_secret
                ),
            );
        }
    }
    let mut mount_seen: HashMap<&str, usize> = HashMap::new();
    let mounts: &[_] = if within(out, "mounts", spec.mounts.len(), MAX_MOUNTS) {
        &spec.mounts
    } else {
        &[]
    };
    for (i, m) in mounts.iter().enumerate() {
        let p = format!("mounts[{i}]");
        if let Some(why) = long_path(&m.path) {
            err(out, format!("{p}.path"), why);
        } else if m.path.trim().is_empty() {
            err(
                out,
                format!("{p}.path"),
                "required: a path relative to the work dir",
            );
        } else if !relative_inside(&m.path) {
            err(
                out,
                format!("{p}.path"),
                format!(
                    "{:?} must be relative to the instance work dir, without '..'",
                    m.path
                ),
            );
        } else if let Some(first) = mount_seen.insert(&m.path, i) {
            err(
                out,
                format!("{p}.path"),
                format!("{:?} is already mounted at mounts[{first}]", m.path),
            );
        }
        if m.source.object_store.is_empty() {
            err(
                out,
                format!("{p}.source.objectStore"),
                "required: the name of a file added with `narun files add`",
            );
        } else if !valid_file_name(&m.source.object_store) {
            err(
                out,
                format!("{p}.source.objectStore"),
                format!("{:?} is not a valid file name", m.source.object_store),
            );
        }
    }
    let mut secret_seen: HashMap<String, usize> = HashMap::new();
    let secrets: &[_] = if within(out, "secrets", spec.secrets.len(), MAX_SECRET_FILES) {
        &spec.secrets
    } else {
        &[]
    };
    for (i, sf) in secrets.iter().enumerate() {
        let p = format!("secrets[{i}]");
        if sf.name.is_empty() {
            err(
                out,
                format!("{p}.name"),
                "required: the name of a secret set with `narun secret set`",
            );
            continue;
        }
        if !valid_secret_name(&sf.name) {
            err(
                out,
                format!("{p}.name"),
                format!(
                    "{:?} is not a valid secret name: letters, digits, '-', '/', '_', '=', '.'",
                    sf.name
                ),
            );
            continue;
        }
        let file = sf.file_name();
        if !valid_file_name(&file) || file.starts_with('.') {
            err(
                out,
                format!("{p}.path"),
                format!(
                    "{file:?} must be a plain file name under {SECRETS_DIR} (no '/', not starting with '.')"
                ),
            );
        } else if let Some(first) = secret_seen.insert(file.clone(), i) {
            err(
                out,
                format!("{p}.path"),
                format!("{SECRETS_DIR}/{file} is already used by secrets[{first}]"),
            );
        }
    }

    nats_access(out, spec);

    // sandbox
    let paths = &spec.landlock.paths;
    let paths: &[_] = if within(out, "landlock.paths", paths.len(), MAX_LANDLOCK_PATHS) {
        paths
    } else {
        &[]
    };
    for (i, lp) in paths.iter().enumerate() {
        let p = format!("landlock.paths[{i}]");
        if let Some(why) = long_path(&lp.path) {
            err(out, format!("{p}.path"), why);
        } else if lp.path.trim().is_empty() {
            err(out, format!("{p}.path"), "required: an absolute path");
        } else if !lp.path.starts_with('/') {
            err(
                out,
                format!("{p}.path"),
                format!("{:?} must be absolute", lp.path),
            );
        }
        if lp.modes.is_empty() {
            err(
                out,
                format!("{p}.modes"),
                "required: letters from r, w, x, c",
            );
        } else if let Some(c) = lp.modes.chars().find(|c| !"rwxc".contains(*c)) {
            err(
                out,
                format!("{p}.modes"),
                format!(
                    "invalid mode {c:?} in {:?}: only r (read), w (write), x (execute) and c \
                     (create, directories) are allowed",
                    lp.modes
                ),
            );
        }
    }
    if spec.mode != Mode::Landlock && !spec.landlock.is_empty() {
        warn(out, "landlock", "ignored unless `mode: landlock`");
    }
    if !spec.user.is_empty() {
        match parse_user(&spec.user) {
            Err(e) => err(out, "user", e),
            Ok(UserRef::Uid(0)) => err(
                out,
                "user",
                "uid 0 is root: write `user: root` if the app must run as root (nodes \
                 refuse it unless their agent runs with --allow-root-apps)",
            ),
            Ok(u) if u.is_root() => warn(
                out,
                "user",
                "the app runs as root: nodes refuse it unless their agent runs with \
                 --allow-root-apps",
            ),
            Ok(_) => {}
        }
    }

    // resources
    if spec.memory_mb > 0 && spec.memory_max_mb > 0 && spec.memory_max_mb < spec.memory_mb {
        err(
            out,
            "memoryMaxMB",
            format!(
                "{} is less than memoryMB ({}): the hard limit must be >= the guaranteed memory",
                spec.memory_max_mb, spec.memory_mb
            ),
        );
    }
    if !spec.cpu_cores.is_finite() || spec.cpu_cores < 0.0 {
        err(out, "cpuCores", "must be a number >= 0 (0.5 = half a core)");
    } else if spec.cpu_cores > 1024.0 {
        err(out, "cpuCores", "must be <= 1024");
    }
    if spec.tasks_max == Some(0) {
        err(
            out,
            "tasksMax",
            "must be > 0 (leave it out for systemd's default)",
        );
    }

    // network
    if spec.network == Some(Network::Host) && !spec.nonet.local_ports.is_empty() {
        err(
            out,
            "nonet.localPorts",
            "only used with `network: none` (a host-network app reaches host ports directly)",
        );
    }
    if path_fits(out, "networkNamespacePath", &spec.network_namespace_path)
        && !spec.network_namespace_path.is_empty()
    {
        if !spec.network_namespace_path.starts_with('/') {
            err(out, "networkNamespacePath", "must be an absolute path");
        }
        if spec.network() == Network::None {
            err(
                out,
                "networkNamespacePath",
                "conflicts with `network: none` (or `nonet`): choose one",
            );
        }
    }
    let mut port_seen: HashMap<(u16, String), usize> = HashMap::new();
    let ports = &spec.nonet.local_ports;
    let ports: &[_] = if within(out, "nonet.localPorts", ports.len(), MAX_LOCAL_PORTS) {
        ports
    } else {
        &[]
    };
    for (i, lp) in ports.iter().enumerate() {
        let p = format!("nonet.localPorts[{i}]");
        if lp.port <= 1024 {
            err(
                out,
                format!("{p}.port"),
                format!(
                    "{} is not allowed: expected 1025..65535 (ports up to 1024 are privileged)",
                    lp.port
                ),
            );
        }
        let proto = normalized_protocol(&lp.protocol);
        if proto != "tcp" && proto != "udp" {
            err(
                out,
                format!("{p}.protocol"),
                format!("{:?} is not supported: expected tcp or udp", lp.protocol),
            );
        } else if let Some(first) = port_seen.insert((lp.port, proto.clone()), i) {
            err(
                out,
                format!("{p}.port"),
                format!(
                    "{}/{proto} is already forwarded at nonet.localPorts[{first}]",
                    lp.port
                ),
            );
        }
    }
    if spec.metrics.port == 0 && !spec.metrics.path.is_empty() {
        warn(out, "metrics.path", "ignored without `metrics.port`");
    }
    if path_fits(out, "metrics.path", &spec.metrics.path)
        && !spec.metrics.path.is_empty()
        && !spec.metrics.path.starts_with('/')
    {
        err(out, "metrics.path", "must start with '/'");
    }

    // lifecycle
    let r = &spec.restart;
    if r.delay.0 > Duration::from_secs(3600) {
        err(out, "restart.delay", "must be at most 1h");
    }
    if r.policy != RestartPolicy::Never && r.max_restarts > 0 && r.window.0 < Duration::from_secs(1)
    {
        err(out, "restart.window", "must be at least 1s");
    }
    if spec.stop_timeout.0 < Duration::from_secs(1)
        || spec.stop_timeout.0 > Duration::from_secs(3600)
    {
        err(out, "stopTimeout", "must be between 1s and 1h");
    }
    if let Some(d) = spec.progress_deadline {
        if d.0 < Duration::from_secs(1) || d.0 > Duration::from_secs(3600) {
            err(out, "progressDeadline", "must be between 1s and 1h");
        }
    }
    if let Some(d) = spec.health.stable_period {
        if d.0 > Duration::from_secs(600) {
            err(out, "health.stablePeriod", "must be at most 10m");
        }
        if d.0 >= spec.progress_deadline() {
            err(
                out,
                "health.stablePeriod",
                format!(
                    "{d} is not shorter than progressDeadline ({}): no replica could ever be ready",
                    SpecDuration(spec.progress_deadline())
                ),
            );
        }
    }

    if let Some(http) = &spec.http {
        if http.port != 0 {
            let many = spec.nodes.iter().any(|n| n.replicas > 1)
                || spec.node_selector.as_ref().is_some_and(|s| s.replicas > 1);
            if many {
                err(
                    out,
                    "http.port",
                    format!(
                        "port {} is pinned, so a node can run only one replica: leave it out (each replica gets its own port in PORT) or use replicas: 1",
                        http.port
                    ),
                );
            }
        }
        if spec.health.notify == Some(false) {
            err(
                out,
                "health.notify",
                "proxy mode (http:) is always ready by notification: narun's bridge sends READY=1 once the app listens and its service is subscribed",
            );
        }
    }
    let h = &spec.health;
    let checks = [!h.exec.is_empty(), h.tcp.is_some(), h.http.is_some()];
    if checks.iter().filter(|c| **c).count() > 1 {
        err(
            out,
            "health",
            "exec, tcp and http are alternatives: give one health check",
        );
    }
    if let Some(first) = h.exec.first() {
        if !first.starts_with('/') {
            err(
                out,
                "health.exec",
                "the command must be an absolute path (no shell, no PATH lookup)",
            );
        }
        if h.exec.len() > 64 {
            err(
                out,
                "health.exec",
                format!("{} arguments, at most 64", h.exec.len()),
            );
        }
        if h.exec.iter().any(|a| a.contains('\0') || a.len() > 4096) {
            err(
                out,
                "health.exec",
                "arguments must be at most 4096 bytes, without NUL",
            );
        }
    }
    if h.tcp == Some(0) {
        err(out, "health.tcp", "must be a port, 1-65535");
    }
    if let Some(http) = &h.http {
        if http.port == 0 {
            err(out, "health.http.port", "must be a port, 1-65535");
        }
        let p = &http.path;
        if !p.is_empty()
            && (!p.starts_with('/') || p.len() > 1024 || p.bytes().any(|b| b <= b' ' || b == 0x7f))
        {
            err(
                out,
                "health.http.path",
                "must start with / and have no spaces or control characters (at most 1024 bytes)",
            );
        }
    }
    for (key, d) in [
        ("health.interval", h.interval),
        ("health.timeout", h.timeout),
    ] {
        let Some(d) = d else { continue };
        if !checks.iter().any(|c| *c) {
            err(
                out,
                key,
                "applies to a health check: give health.exec, tcp or http",
            );
        } else if d.0 < Duration::from_millis(100) || d.0 > Duration::from_secs(60) {
            err(out, key, "must be between 100ms and 1m");
        }
    }

    // Go keys narun does not use.
    if !spec.command.is_empty() {
        warn(
            out,
            "command",
            "ignored: narun runs the uploaded binary (put arguments in `args`)",
        );
    }
    if !spec.cgroup_parent.is_empty() {
        warn(
            out,
            "cgroupParent",
            "ignored: systemd places every instance under narun.slice (memoryMB, memoryMaxMB, \
             cpuCores and tasksMax still apply)",
        );
    }
    within(
        out,
        "jail.ip4Addresses",
        spec.jail.ip4_addresses.len(),
        MAX_SMALL_LIST,
    );
    if spec.jail != Default::default() {
        warn(
            out,
            "jail",
            "ignored: FreeBSD jails are not supported on Linux",
        );
    }
}

/// Fill in defaults the agent and the hash rely on.
pub(crate) fn normalize(spec: &mut ServiceSpec) {
    for lp in &mut spec.nonet.local_ports {
        lp.protocol = normalized_protocol(&lp.protocol);
    }
    if spec.metrics.port != 0 && spec.metrics.path.is_empty() {
        spec.metrics.path = "/metrics".into();
    }
}

fn normalized_protocol(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    if p.is_empty() {
        "tcp".into()
    } else {
        p
    }
}

fn replicas(out: &mut Found, path: &str, n: u32) {
    if n == 0 {
        err(out, path, "must be > 0");
    } else if n > MAX_REPLICAS {
        err(out, path, format!("must be at most {MAX_REPLICAS}"));
    }
}

fn labels(out: &mut Found, path: &str, labels: &std::collections::BTreeMap<String, String>) {
    if !within(out, path, labels.len(), MAX_LABELS) {
        return;
    }
    for (k, v) in labels {
        if !valid_label_key(k) {
            err(
                out,
                format!("{path}.{k}"),
                "invalid label key: letters, digits, '.', '_', '/', '-' (at most 63, starting \
                 with a letter or digit)",
            );
        }
        if v.len() > 256 || v.chars().any(char::is_control) {
            err(
                out,
                format!("{path}.{k}"),
                "invalid label value: at most 256 characters, no control characters",
            );
        }
    }
}

fn arch_hint(a: &str) -> String {
    let alias = match a.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" | "x64" => Some("amd64"),
        "aarch64" | "armv8" => Some("arm64"),
        "i386" | "i686" | "x86" => Some("386"),
        "armv7" | "armv7l" | "armhf" | "armv6" => Some("arm"),
        "riscv" | "riscv64gc" => Some("riscv64"),
        "ppc64el" | "powerpc64le" => Some("ppc64le"),
        "loongarch64" => Some("loong64"),
        _ => did_you_mean(a, KNOWN_ARCHES),
    };
    alias
        .map(|s| format!(" (did you mean {s:?}? narun uses Go's architecture names)"))
        .unwrap_or_default()
}

/// A path that stays inside the directory it is joined to.
fn relative_inside(p: &str) -> bool {
    let path = Path::new(p);
    !path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)))
}

/// `nats:`: subjects an app may publish or subscribe to, KV buckets it may
/// read. Not `$...` subjects (JetStream, `$SRV`: `kv:` grants what reading a
/// bucket needs), not `_INBOX...` (others' replies), not narun's buckets.
fn nats_access(out: &mut Found, spec: &ServiceSpec) {
    let n = &spec.nats;
    for (key, list) in [
        ("nats.publish", &n.publish),
        ("nats.subscribe", &n.subscribe),
    ] {
        if !within(out, key, list.len(), MAX_SMALL_LIST) {
            continue;
        }
        for (i, subject) in list.iter().enumerate() {
            if let Some(why) = subject_problem(subject) {
                err(out, format!("{key}[{i}]"), format!("{subject:?}: {why}"));
            }
        }
    }
    if within(out, "nats.kv", n.kv.len(), MAX_SMALL_LIST) {
        for (i, bucket) in n.kv.iter().enumerate() {
            let valid = !bucket.is_empty()
                && bucket.len() <= 255
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                err(
                    out,
                    format!("nats.kv[{i}]"),
                    format!("{bucket:?} is not a KV bucket name: letters, digits, '-' and '_'"),
                );
            } else if crate::store::replicas::RESOURCES
                .iter()
                .any(|r| r.name == bucket.as_str())
            {
                err(
                    out,
                    format!("nats.kv[{i}]"),
                    format!("{bucket:?} is narun's own bucket: apps may not read it"),
                );
            }
        }
    }
}

/// Why `subject` cannot be granted to an app, if it cannot.
fn subject_problem(subject: &str) -> Option<&'static str> {
    if subject.is_empty() || subject.len() > 255 {
        return Some("a subject of 1 to 255 characters is expected");
    }
    if subject
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Some("a subject has no spaces or control characters");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return Some("empty token (a '.' at the start, the end or doubled)");
    }
    if let Some(pos) = tokens.iter().position(|t| *t == ">") {
        if pos + 1 != tokens.len() {
            return Some("'>' may only be the last token");
        }
    }
    if tokens
        .iter()
        .any(|t| t.len() > 1 && (t.contains('*') || t.contains('>')))
    {
        return Some("'*' and '>' are whole tokens");
    }
    if subject.starts_with('$') || matches!(tokens[0], "*" | ">") {
        return Some(
            "system subjects ($JS, $SRV, $KV, ...) and leading wildcards are not granted: \
             use nats.kv for a bucket",
        );
    }
    if subject.starts_with("_INBOX") {
        return Some("inboxes are not granted: replies reach the app's own inbox");
    }
    None
}

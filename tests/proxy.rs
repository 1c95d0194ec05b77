//! Proxy mode, as a user runs it: an ordinary HTTP server (a Python
//! program, no narun library) deployed with `http:` in its spec through
//! `narun deploy`, reached through `narun gateway`.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::agent::Agent;
use common::systemd::{cleanup_state, PrivateSystemd, VarLibDir};
use common::*;

/// A plain HTTP server on 127.0.0.1:$PORT: `/` says which process
/// answered, `/echo` returns the request body, `/slow` never answers in
/// time, anything else is its own 404.
const SERVER: &str = r#"
import http.server, os, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Host", self.headers.get("Host", ""))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.endswith("/slow"):
            time.sleep(30)
        if self.path.endswith("/") or self.path.endswith("/slow"):
            self.reply(200, ("served by %d as uid %d" % (os.getpid(), os.getuid())).encode())
        else:
            self.reply(404, b"no such page here\n")
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.reply(200, self.rfile.read(n))
print("listening on", os.environ["PORT"], flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// A node for proxy-mode apps: a private systemd and an agent whose
/// `--bridge-binary` is narun itself, copied where app users can execute it
/// (the packages install /usr/bin/narun).
fn proxy_node(nats: &NatsServer) -> (PrivateSystemd, VarLibDir, Agent) {
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-proxy");
    let narun = data.0.join("narun");
    std::fs::copy(narun_binary(), &narun).unwrap();
    let agent = Agent::start_with(
        nats,
        &sd,
        "n1",
        &data.0,
        &["--bridge-binary", narun.to_str().unwrap()],
    );
    (sd, data, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_http_server_serves_through_the_gateway() {
    let app = "px-web";
    cleanup_state(app);
    // Bodies of a few MiB: NATS's default max payload is 1 MiB.
    let nats = NatsServer::start_with_config("max_payload: 8MB\n");
    let (sd, _data, _agent) = proxy_node(&nats);
    let gw = GatewayProc::start(
        &nats.url(),
        &format!("  - path: \"/\"\n    methods: [\"GET\", \"POST\"]\n    service: \"{app}\"\n    timeout: \"2s\""),
        "",
    );
    let work = tempfile::tempdir().unwrap();
    let spec = write_spec(
        work.path(),
        "web.yaml",
        &format!(
            "name: {app}\ntag: v1\nargs: [\"-c\", {}]\nhttp: {{}}\nnodes:\n  - name: n1\n    replicas: 2\n",
            serde_json::to_string(SERVER).unwrap()
        ),
    );
    let (code, out, err) = narun_cli(
        &nats,
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            "/usr/bin/python3",
            "--wait=60s",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");

    // Both replicas serve, each on its own port, as a dynamic user.
    let mut served_by = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while served_by.len() < 2 {
        assert!(Instant::now() < deadline, "one replica only: {served_by:?}");
        let r = http(gw.http, "GET", "/", &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        assert!(!text.contains("uid 0"), "runs as root: {text}");
        assert_eq!(
            r.headers["x-seen-host"],
            gw.http.to_string().as_str(),
            "Host reaches the app"
        );
        served_by.insert(text);
    }
    for i in 0..2 {
        let unit = if i == 0 {
            format!("narun-app@{app}.service")
        } else {
            format!("narun-app@{app}:1.service")
        };
        let journal = sd.journal(&["-u", &unit, "-o", "cat", "--no-pager"]);
        assert!(journal.contains("listening on"), "{unit}: {journal}");
        assert_eq!(sd.show(&unit, "Type"), "notify");
    }

    // The app's own 404 passes through.
    let r = http(gw.http, "GET", "/nope", &[], Bytes::new()).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "no such page here\n");

    // A few MiB round-trip.
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let r = http(gw.http, "POST", "/echo", &[], Bytes::from(body.clone())).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body == body,
        "the body came back changed ({} bytes)",
        r.body.len()
    );

    // A slow app: the gateway's 504 at the route timeout.
    let t = Instant::now();
    let r = http(gw.http, "GET", "/slow", &[], Bytes::new()).await;
    assert_eq!(r.status, 504, "{}", r.text());
    eprintln!("slow app: 504 after {:?}", t.elapsed());

    // A new version replaces both replicas under a steady load: each
    // generation has its own port, the old bridge drains before its app
    // stops, so no request fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, addr) = (stop.clone(), gw.http);
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http(addr, "GET", "/", &[], Bytes::new()).await;
                if r.status == 200 {
                    ok += 1;
                } else {
                    failed.push((r.status, r.text()));
                }
            }
            (ok, failed)
        })
    };
    let v2 = write_spec(
        work.path(),
        "web2.yaml",
        &std::fs::read_to_string(&spec)
            .unwrap()
            .replace("tag: v1", "tag: v2"),
    );
    let (code, out, err) = narun_cli(
        &nats,
        &[
            "deploy",
            "-f",
            v2.to_str().unwrap(),
            "/usr/bin/python3",
            "--wait=60s",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 0);
    eprintln!("replacement under load: {ok} requests, 0 failed");

    // Python's own http.server, as is, on a pinned port: its directory
    // listing and its 404 page pass through.
    let listing = "px-listing";
    cleanup_state(listing);
    let port = free_port();
    let spec2 = write_spec(
        work.path(),
        "listing.yaml",
        &format!(
            "name: {listing}\ntag: v1\nargs: [\"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"{port}\"]\nhttp: {{port: {port}}}\nnodes:\n  - name: n1\n    replicas: 1\n"
        ),
    );
    let (code, out, err) = narun_cli(
        &nats,
        &[
            "deploy",
            "-f",
            spec2.to_str().unwrap(),
            "/usr/bin/python3",
            "--wait=60s",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let gw2 = GatewayProc::start(
        &nats.url(),
        &format!("  - path: \"/\"\n    methods: [\"GET\"]\n    service: \"{listing}\""),
        "",
    );
    let r = http(gw2.http, "GET", "/", &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Directory listing for /"), "{}", r.text());
    let r = http(gw2.http, "GET", "/no-such-file", &[], Bytes::new()).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("File not found"), "{}", r.text());
    let (code, _, err) = narun_cli(&nats, &["apps", "delete", listing, "-y"]);
    assert_eq!(code, 0, "{err}");
    cleanup_state(listing);

    // Stopped: 503, quickly.
    let (code, _, err) = narun_cli(&nats, &["apps", "delete", app, "-y"]);
    assert_eq!(code, 0, "{err}");
    eventually(
        Duration::from_secs(30),
        "503 once the app is gone",
        || async { http(gw.http, "GET", "/", &[], Bytes::new()).await.status == 503 },
    )
    .await;
    let t = Instant::now();
    assert_eq!(
        http(gw.http, "GET", "/", &[], Bytes::new()).await.status,
        503
    );
    eprintln!("stopped app: 503 after {:?}", t.elapsed());
    cleanup_state(app);
}

/// The app checks its own sandbox on `GET /`: a file outside its landlock
/// rules, a TCP port outside `nonet.localPorts`, a listen on a port that
/// is not its `PORT`.
const SANDBOXED: &str = r#"
import http.server, os, socket, sys
def attempt(f):
    try:
        f()
        return "allowed"
    except OSError:
        return "denied"
def read_passwd():
    open("/etc/passwd").read()
def connect_other():
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
def listen_other():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.close()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("passwd-%s connect-%s listen-%s uid-%d" % (
            attempt(read_passwd), attempt(connect_other), attempt(listen_other), os.getuid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// Proxy mode inside the sandboxes: `mode: landlock` (the app under
/// narun-exec's filesystem rules) and `nonet.localPorts` (loopback only;
/// TCP connects to the listed ports only, listens on the app's own port
/// only). The bridge reaches NATS on loopback; the app binds the port the
/// bridge gave it, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_app_serves_inside_landlock_and_nonet() {
    let app = "px-sandboxed";
    cleanup_state(app);
    let nats = NatsServer::start();
    let nats_port = nats.url().rsplit(':').next().unwrap().to_owned();
    let (sd, _data, _agent) = proxy_node(&nats);
    let gw = GatewayProc::start(
        &nats.url(),
        &format!("  - path: \"/\"\n    methods: [\"GET\"]\n    service: \"{app}\""),
        "",
    );
    // A listener the app may not reach: not in localPorts.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let work = tempfile::tempdir().unwrap();
    let spec = write_spec(
        work.path(),
        "sandboxed.yaml",
        &format!(
            "name: {app}\ntag: v1\nargs: [\"-c\", {}, \"{other_port}\"]\nhttp: {{}}\n\
             mode: landlock\nlandlock: {{shared: true}}\n\
             nonet:\n  localPorts:\n    - port: {nats_port}\n\
             nodes:\n  - name: n1\n    replicas: 1\n",
            serde_json::to_string(SANDBOXED).unwrap()
        ),
    );
    let (code, out, err) = narun_cli(
        &nats,
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            "/usr/bin/python3",
            "--wait=60s",
        ],
    );
    let unit = format!("narun-app@{app}.service");
    let journal = || sd.journal(&["-u", &unit, "-o", "cat", "--no-pager"]);
    assert_eq!(code, 0, "{out}\n{err}\n{}", journal());
    let exec = sd.show(&unit, "ExecStart");
    assert!(
        exec.contains("bridge") && exec.contains("narun-exec") && exec.contains("--policy"),
        "{exec}"
    );
    assert!(!sd.show(&unit, "IPAddressDeny").is_empty(), "loopback only");

    let r = http(gw.http, "GET", "/", &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), journal());
    let text = r.text();
    for seen in ["passwd-denied", "connect-denied", "listen-denied"] {
        assert!(text.contains(seen), "{seen}: {text}");
    }
    assert!(!text.contains("uid-0"), "runs as root: {text}");
    drop(other);
    let (code, _, err) = narun_cli(&nats, &["apps", "delete", app, "-y"]);
    assert_eq!(code, 0, "{err}");
    cleanup_state(app);
}

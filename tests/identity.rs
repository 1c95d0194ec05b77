//! Per-app NATS identity against a real nats-server in operator (JWT)
//! mode and a real private systemd: the node agent, given an account
//! signing key, mints each app a user that may serve only its own subject.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::agent::Agent;
use common::systemd::{cleanup_state, PrivateSystemd, VarLibDir};
use common::*;
use narun::nats::jwt::{self, AccountLimits, Allow, Nats};
use nkeys::KeyPair;

/// An operator, its system account and one account `narun` with a signing
/// key, as `nsc` would make them: the server configuration that trusts
/// them, and creds of unrestricted users of the account.
struct Auth {
    config: String,
    account: KeyPair,
    signing_key: KeyPair,
    /// A second signing key of the account, to rotate to.
    next_signing_key: KeyPair,
    dir: tempfile::TempDir,
}

impl Auth {
    /// Monitoring on any free port (`NatsServer::monitor_port`).
    fn new() -> Auth {
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let signing_key = KeyPair::new_account();
        let next_signing_key = KeyPair::new_account();
        let sign = |c, k: &KeyPair| jwt::sign(c, k).unwrap();
        let operator_jwt = sign(
            jwt::claims(
                &operator,
                operator.public_key(),
                "narun-test",
                Nats::Operator {
                    signing_keys: vec![],
                    system_account: system.public_key(),
                    version: 2,
                },
            ),
            &operator,
        );
        let mut sys_limits = AccountLimits::unlimited();
        (sys_limits.mem_storage, sys_limits.disk_storage) = (0, 0);
        let account_jwt = |kp: &KeyPair, name: &str, limits, signing_keys| {
            sign(
                jwt::claims(
                    &operator,
                    kp.public_key(),
                    name,
                    Nats::Account {
                        limits,
                        signing_keys,
                        version: 2,
                    },
                ),
                &operator,
            )
        };
        let config = format!(
            "operator: \"{operator_jwt}\"\nsystem_account: \"{sys}\"\nresolver: MEMORY\n\
             resolver_preload: {{\n  \"{sys}\": \"{sys_jwt}\"\n  \"{acc}\": \"{acc_jwt}\"\n}}\n\
             http: \"127.0.0.1:-1\"\n",
            sys = system.public_key(),
            sys_jwt = account_jwt(&system, "SYS", sys_limits, vec![]),
            acc = account.public_key(),
            acc_jwt = account_jwt(
                &account,
                "narun",
                AccountLimits::unlimited(),
                vec![signing_key.public_key(), next_signing_key.public_key()]
            ),
        );
        Auth {
            config,
            account,
            signing_key,
            next_signing_key,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Creds of an unrestricted user of the account (the agent's, the
    /// CLI's, the gateway's), written 0600.
    fn user_creds(&self, name: &str) -> PathBuf {
        let user = KeyPair::new_user();
        let token = jwt::sign(
            jwt::claims(
                &self.account,
                user.public_key(),
                name,
                Nats::User {
                    issuer_account: String::new(),
                    publish: Allow::default(),
                    subscribe: Allow::default(),
                    resp: None,
                    subs: -1,
                    data: -1,
                    payload: -1,
                    version: 2,
                },
            ),
            &self.account,
        )
        .unwrap();
        let path = self.dir.path().join(format!("{name}.creds"));
        write_0600(&path, &jwt::creds(&token, &user.seed().unwrap()));
        path
    }

    /// The account signing key's seed file, 0600 (the next one's with
    /// `next`).
    fn signing_key_file(&self, next: bool) -> PathBuf {
        let (name, key) = if next {
            ("next-signing.nk", &self.next_signing_key)
        } else {
            ("signing.nk", &self.signing_key)
        };
        let path = self.dir.path().join(name);
        write_0600(&path, &key.seed().unwrap());
        path
    }
}

fn write_0600(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// `narun ARGS` as the operator, with the admin creds.
fn narun_as_output(creds: &Path, nats: &NatsServer, args: &[&str]) -> std::process::Output {
    Command::new(narun_binary())
        .args(args)
        .env("NATS_URL", nats.url())
        .env("NATS_CREDS", creds)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// [`narun_as_output`], which must exit 0; returns stdout.
fn narun_as(creds: &Path, nats: &NatsServer, args: &[&str]) -> String {
    let out = narun_as_output(creds, nats, args);
    assert!(
        out.status.success(),
        "narun {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subjects the connection of NATS user `user` is subscribed to
/// (the server's `/connz`), None while it is not connected.
async fn subscriptions_of(monitor_port: u16, user: &str) -> Option<Vec<String>> {
    let addr = format!("127.0.0.1:{monitor_port}").parse().unwrap();
    let reply = http(
        addr,
        "GET",
        "/connz?subs=1&auth=1&limit=1024",
        &[],
        bytes::Bytes::new(),
    )
    .await;
    let doc = reply.json();
    let conn = doc["connections"]
        .as_array()?
        .iter()
        .find(|c| c["authorized_user"].as_str() == Some(user))?
        .clone();
    Some(
        conn["subscriptions_list"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// The user public key of the creds the agent minted for `app`.
fn minted_user(data: &Path, app: &str) -> (PathBuf, String) {
    let path = data.join("run/files").join(app).join("nats.creds");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let claims = jwt::verify(jwt::creds_jwt(&text).unwrap()).unwrap();
    (path, claims.sub)
}

/// App A serves; app B, deployed to serve A's subject, is refused by the
/// server (and logs the permissions violation); B's identity cannot read
/// the secrets bucket nor subscribe to A's subject; A's replies still flow
/// through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_serves_only_its_own_subject() {
    let (a, b) = ("id-a", "id-b");
    cleanup_state(a);
    cleanup_state(b);
    let auth = Auth::new();
    let nats = NatsServer::start_with_config(&auth.config);
    let monitor = nats.monitor_port();
    let admin = auth.user_creds("admin");
    let agent_creds = auth.user_creds("node-n1");
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-identity");
    let agent = Agent::start_with(
        &nats,
        &sd,
        "n1",
        &data.0,
        &[
            "--creds",
            agent_creds.to_str().unwrap(),
            "--account-signing-key",
            auth.signing_key_file(false).to_str().unwrap(),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let hello = example_binary("hello");
    let spec = |app: &str, serves: &str, more: &str| {
        write_spec(
            work.path(),
            &format!("{app}.yaml"),
            &format!(
                "name: {app}\ntag: v1\nargs: [\"--service\", \"{serves}\"]\n{more}\
                 nodes: [{{name: n1, replicas: 1}}]\n"
            ),
        )
    };
    narun_as(
        &admin,
        &nats,
        &[
            "deploy",
            "-f",
            spec(a, a, "").to_str().unwrap(),
            hello.to_str().unwrap(),
            "--wait=60s",
        ],
    );
    let (_, a_user) = minted_user(&data.0, a);
    eventually(
        Duration::from_secs(30),
        "A subscribed to its subject",
        || async {
            subscriptions_of(monitor, &a_user)
                .await
                .is_some_and(|s| s.iter().any(|x| x == a))
        },
    )
    .await;

    // B tries to serve A's subject.
    narun_as(
        &admin,
        &nats,
        &[
            "deploy",
            "-f",
            spec(b, a, "").to_str().unwrap(),
            hello.to_str().unwrap(),
        ],
    );
    eventually(
        Duration::from_secs(60),
        "B logs a permissions violation",
        || async {
            let out = narun_as_output(&admin, &nats, &["logs", b, "--raw"]);
            String::from_utf8_lossy(&out.stdout)
                .to_ascii_lowercase()
                .contains("permissions violation")
        },
    )
    .await;
    let (b_creds, b_user) = minted_user(&data.0, b);
    assert_ne!(a_user, b_user, "one user per app");
    let b_subs = subscriptions_of(monitor, &b_user)
        .await
        .expect("B is connected with its own user");
    assert!(
        !b_subs.iter().any(|s| s == a),
        "the server let B subscribe to A's subject: {b_subs:?}"
    );

    // B's identity: no JetStream (secrets), no subscription to A.
    let b_client = async_nats::ConnectOptions::with_credentials_file(b_creds.clone())
        .await
        .unwrap()
        .connect(nats.url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(b_client.clone());
    let denied = tokio::time::timeout(
        Duration::from_secs(10),
        js.get_key_value(narun::store::SECRETS),
    )
    .await;
    assert!(!matches!(denied, Ok(Ok(_))), "B opened the secrets bucket");
    // A plain subscription would get a copy of every request to A: the
    // server refuses it (-ERR), so it gets none.
    let mut copies = b_client.subscribe(a.to_owned()).await.unwrap();
    b_client.flush().await.unwrap();

    // App C may read KV bucket `catalog` (spec `nats.kv`), through its own
    // inbox; B, without a `nats:` block, may not.
    let admin_js = async_nats::jetstream::new(
        async_nats::ConnectOptions::with_credentials_file(admin.clone())
            .await
            .unwrap()
            .connect(nats.url())
            .await
            .unwrap(),
    );
    admin_js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "catalog".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .put("item", "42".into())
        .await
        .unwrap();
    let c = "id-c";
    cleanup_state(c);
    let c_spec = spec(c, c, "nats: {kv: [catalog]}\n");
    narun_as(
        &admin,
        &nats,
        &[
            "deploy",
            "-f",
            c_spec.to_str().unwrap(),
            hello.to_str().unwrap(),
            "--wait=60s",
        ],
    );
    let (c_creds, _) = minted_user(&data.0, c);
    let url = nats.url();
    let as_app = |creds: PathBuf, app: &'static str| {
        let url = url.clone();
        async move {
            let client = async_nats::ConnectOptions::with_credentials_file(creds)
                .await
                .unwrap()
                .custom_inbox_prefix(jwt::app_inbox_prefix(app))
                .connect(url)
                .await
                .unwrap();
            let mut js = async_nats::jetstream::new(client);
            js.set_timeout(Duration::from_secs(3));
            js
        }
    };
    let c_js = as_app(c_creds, "id-c").await;
    let catalog = c_js
        .get_key_value("catalog")
        .await
        .expect("C opens catalog");
    let item = catalog.get("item").await.expect("C reads catalog");
    assert_eq!(item.as_deref(), Some(&b"42"[..]));
    assert!(
        c_js.get_key_value(narun::store::SECRETS).await.is_err(),
        "C opened the secrets bucket"
    );
    let b_js = as_app(b_creds.clone(), "id-b").await;
    assert!(
        b_js.get_key_value("catalog").await.is_err(),
        "B opened catalog"
    );

    // A's replies flow through the gateway (the gateway as another
    // unrestricted user).
    let gw = GatewayProc::start(
        &nats.url(),
        &format!("  - path: \"/hello/\"\n    methods: [\"POST\"]\n    service: \"{a}\""),
        &format!("creds_file: {:?}", admin.display().to_string()),
    );
    for i in 0..20 {
        let r = http(
            gw.http,
            "POST",
            "/hello/",
            &[("content-type", "application/json")],
            format!("{{\"name\":\"n{i}\"}}"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Whatever the server routed to B's connection before this round trip
    // has arrived once it returns.
    b_client.flush().await.unwrap();
    assert!(
        futures_util::FutureExt::now_or_never(futures_util::StreamExt::next(&mut copies)).is_none(),
        "B's identity received A's traffic"
    );

    // `nodes list` says which key the node mints with, and does not warn.
    let out = narun_as_output(&admin, &nats, &["nodes", "list", "-o", "json"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains(&format!(
            "\"app_identity\": \"{}\"",
            auth.signing_key.public_key()
        )),
        "{stdout}"
    );
    assert!(!stderr.contains("no NATS identity"), "{stderr}");

    // Rotation: the agent restarted with the account's other signing key
    // replaces every app (a rollout, A keeps serving) with creds of the new
    // key; the old creds are not kept.
    drop(agent);
    let pid_before = sd.show(&format!("narun-app@{a}.service"), "MainPID");
    let _agent = Agent::start_with(
        &nats,
        &sd,
        "n1",
        &data.0,
        &[
            "--creds",
            agent_creds.to_str().unwrap(),
            "--account-signing-key",
            auth.signing_key_file(true).to_str().unwrap(),
        ],
    );
    let next = auth.next_signing_key.public_key();
    eventually(
        Duration::from_secs(60),
        "A re-minted and serving",
        || async {
            let Ok(text) =
                std::fs::read_to_string(data.0.join("run/files").join(a).join("nats.creds"))
            else {
                return false;
            };
            let Some(c) = jwt::creds_jwt(&text).and_then(|j| jwt::verify(j).ok()) else {
                return false;
            };
            c.iss == next
                && subscriptions_of(monitor, &c.sub)
                    .await
                    .is_some_and(|s| s.iter().any(|x| x == a))
        },
    )
    .await;
    // The old generation stops once the new one is ready.
    eventually(
        Duration::from_secs(60),
        "A's old process replaced",
        || async { sd.show(&format!("narun-app@{a}.service"), "MainPID") != pid_before },
    )
    .await;
    let r = http(
        gw.http,
        "POST",
        "/hello/",
        &[("content-type", "application/json")],
        "{\"name\":\"rotated\"}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

//! NATS decentralized JWT auth: operator → account → user claims, signed
//! with nkeys, and the `.creds` file a client connects with.
//!
//! Per-app identity is built on it: a node agent holding an account
//! signing key mints, for each app, a user whose permissions are
//! [`app_permissions`], so an app can serve its own subject and nothing
//! else. The operator and account JWTs are what an operator configures the
//! servers with (`operator:`, `resolver_preload:`); the same types make
//! them for tests and for `narun`'s own setup helper.
//!
//! The format is nats-io/jwt v2's (what nats-server 2.10+ verifies): a JWS
//! with header `{"typ":"JWT","alg":"ed25519-nkey"}`, claims whose `iss` is
//! the signer's public nkey and whose `nats.type` says what they describe,
//! and `jti` a hash of the claims. The crates on crates.io cover user and
//! account claims without the `resp` permission and without operators,
//! which this needs, so the few structs are here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nkeys::KeyPair;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// What a JWT says (the registered claims and the NATS ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// A hash of the claims (set by [`sign`]).
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Public nkey of the signer.
    pub iss: String,
    /// Friendly name.
    pub name: String,
    /// Public nkey of what the claims describe.
    pub sub: String,
    /// Expiry, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// The NATS part.
    pub nats: Nats,
}

/// The NATS part of the claims, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Nats {
    /// An operator: trusted by the servers' configuration.
    Operator {
        /// Keys that may sign accounts besides the operator's own.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        signing_keys: Vec<String>,
        /// The system account's public nkey.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        system_account: String,
        /// Always 2.
        version: u8,
    },
    /// An account: a namespace of subjects, signed by its operator.
    Account {
        /// Limits; -1 is unlimited.
        limits: AccountLimits,
        /// Keys that may sign this account's users.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        signing_keys: Vec<String>,
        /// Always 2.
        version: u8,
    },
    /// A user of an account.
    User {
        /// The account's public nkey, when a signing key signed the user.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        issuer_account: String,
        /// What the user may publish.
        #[serde(rename = "pub")]
        publish: Allow,
        /// What the user may subscribe to (`"subject queue"` limits a
        /// subscription to a queue group).
        #[serde(rename = "sub")]
        subscribe: Allow,
        /// May reply to the requests it received (once each), whatever
        /// their reply subject.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resp: Option<Responses>,
        /// Subscriptions, -1 unlimited.
        subs: i64,
        /// Bytes, -1 unlimited.
        data: i64,
        /// Largest message, -1 the server's limit.
        payload: i64,
        /// Always 2.
        version: u8,
    },
}

/// An allow list (the server denies everything else when it is not
/// empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    /// Allowed subjects (wildcards allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// The `resp` permission: replies to received requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responses {
    /// Replies per request.
    pub max: i64,
    /// How long a reply may come, in nanoseconds (0: no limit).
    pub ttl: i64,
}

/// Account limits (-1 unlimited); JetStream is enabled by non-zero
/// storage limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimits {
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    pub imports: i64,
    pub exports: i64,
    pub wildcards: bool,
    pub conn: i64,
    pub leaf: i64,
    pub mem_storage: i64,
    pub disk_storage: i64,
    pub streams: i64,
    pub consumer: i64,
}

impl AccountLimits {
    /// Nothing limited, JetStream enabled.
    pub fn unlimited() -> Self {
        AccountLimits {
            subs: -1,
            data: -1,
            payload: -1,
            imports: -1,
            exports: -1,
            wildcards: true,
            conn: -1,
            leaf: -1,
            mem_storage: -1,
            disk_storage: -1,
            streams: -1,
            consumer: -1,
        }
    }
}

/// Why a JWT could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error("not a NATS JWT: {0}")]
    Malformed(String),
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Claims for `sub` named `name`, issued now by `signer` (its `iss`).
pub fn claims(signer: &KeyPair, sub: String, name: impl Into<String>, nats: Nats) -> Claims {
    Claims {
        jti: String::new(),
        iat: now(),
        iss: signer.public_key(),
        name: name.into(),
        sub,
        exp: None,
        nats,
    }
}

/// Sign `claims` with `signer` (whose public key must be `claims.iss`):
/// the JWT text.
pub fn sign(mut claims: Claims, signer: &KeyPair) -> Result<String, JwtError> {
    claims.jti.clear();
    let unhashed = serde_json::to_vec(&claims).map_err(|e| JwtError::Sign(e.to_string()))?;
    claims.jti = URL_SAFE_NO_PAD.encode(Sha256::digest(&unhashed));
    let body = serde_json::to_vec(&claims).map_err(|e| JwtError::Sign(e.to_string()))?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(body)
    );
    let sig = signer
        .sign(signing_input.as_bytes())
        .map_err(|e| JwtError::Sign(e.to_string()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// The claims of `jwt`, after checking its signature against its `iss`.
pub fn verify(jwt: &str) -> Result<Claims, JwtError> {
    let bad = |why: &str| JwtError::Malformed(why.to_owned());
    let mut parts = jwt.trim().splitn(3, '.');
    let (Some(h), Some(b), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("three dot-separated parts expected"));
    };
    let body = URL_SAFE_NO_PAD
        .decode(b)
        .map_err(|_| bad("the claims are not base64url"))?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad("the signature is not base64url"))?;
    let claims: Claims =
        serde_json::from_slice(&body).map_err(|e| JwtError::Malformed(e.to_string()))?;
    let issuer =
        KeyPair::from_public_key(&claims.iss).map_err(|_| bad("iss is not a public nkey"))?;
    issuer
        .verify(format!("{h}.{b}").as_bytes(), &sig)
        .map_err(|_| bad("the signature does not match iss"))?;
    Ok(claims)
}

/// A `.creds` file: the user JWT and its nkey seed, in the format every
/// NATS client reads (`NATS_CREDS`).
pub fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// What an app may do on NATS besides serving: the spec's `nats:` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    /// Subjects it may publish to (requests to other services included).
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
    /// KV buckets it may read.
    pub kv: Vec<String>,
}

/// The JetStream API subjects reading KV bucket `bucket` takes (stream
/// info, direct and message gets, ordered consumers for keys and watches,
/// their flow control).
fn kv_read_subjects(bucket: &str) -> Vec<String> {
    let stream = format!("KV_{bucket}");
    vec![
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.*"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.*"),
        format!("$JS.FC.{stream}.>"),
    ]
}

/// The inbox prefix of app `app`'s requests (`_INBOX_<app>`): a client
/// that sends requests uses it (async-nats `custom_inbox_prefix`,
/// `NATS_INBOX_PREFIX` for the consumer library), so no app can read
/// another's replies.
pub fn app_inbox_prefix(app: &str) -> String {
    format!("_INBOX_{app}")
}

/// The permissions of app `app`'s user: serve its own service (subject
/// `app` in the queue group, and the `$SRV` discovery verbs for its name),
/// reply to what it receives, and what `extra` adds (with an inbox of its
/// own when it may publish requests). Nothing else: not another app's
/// subject, not `$SRV.>` of others, not `_INBOX.>` (everyone's replies),
/// not JetStream (secrets, specs, logs).
pub fn app_permissions(app: &str, extra: &Extra) -> (Allow, Allow, Responses) {
    let mut sub = vec![format!("{app} {}", crate::wire::QUEUE_GROUP)];
    for verb in ["PING", "INFO", "STATS"] {
        sub.push(format!("$SRV.{verb}"));
        sub.push(format!("$SRV.{verb}.{app}"));
        sub.push(format!("$SRV.{verb}.{app}.*"));
    }
    if !extra.publish.is_empty() || !extra.kv.is_empty() {
        sub.push(format!("{}.>", app_inbox_prefix(app)));
    }
    sub.extend(extra.subscribe.iter().cloned());
    let mut publish = extra.publish.clone();
    for bucket in &extra.kv {
        publish.extend(kv_read_subjects(bucket));
    }
    (
        Allow { allow: publish },
        Allow { allow: sub },
        Responses { max: 1, ttl: 0 },
    )
}

/// An account signing key and the account it signs for: what a node agent
/// mints its apps' users with. Its `Debug` shows public keys only.
pub struct Issuer {
    account: String,
    key: KeyPair,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("account", &self.account)
            .field("signing_key", &self.key.public_key())
            .finish()
    }
}

impl Issuer {
    /// From an account nkey seed (`SA...`: the account's own key or one of
    /// its signing keys) and the account's public key (None: the seed is
    /// the account's own key).
    pub fn from_seed(seed: &str, account: Option<String>) -> Result<Self, JwtError> {
        let seed = seed.trim();
        if !seed.starts_with("SA") {
            return Err(JwtError::Malformed(
                "an account nkey seed (SA...) is expected".to_owned(),
            ));
        }
        let key = KeyPair::from_seed(seed)
            .map_err(|e| JwtError::Malformed(format!("invalid account seed: {e}")))?;
        let account = account.unwrap_or_else(|| key.public_key());
        if !account.starts_with('A') || KeyPair::from_public_key(&account).is_err() {
            return Err(JwtError::Malformed(format!(
                "{account:?} is not an account public key (A...)"
            )));
        }
        Ok(Issuer { account, key })
    }

    /// The account's public key.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The signing key's public key (rotating it re-mints every app).
    pub fn signing_key(&self) -> String {
        self.key.public_key()
    }

    /// Mint app `app`'s user ([`mint_app_user`]): (user public key, creds).
    pub fn mint(&self, app: &str, extra: &Extra) -> Result<(String, String), JwtError> {
        mint_app_user(app, extra, &self.account, &self.key)
    }

    /// Does `creds` (a `.creds` text) hold a user of app `app` this issuer
    /// signed, with the permissions [`app_permissions`] gives it now?
    /// (Then it is kept: the app's identity does not change on every
    /// reconcile.)
    pub fn still_valid(&self, creds: &str, app: &str, extra: &Extra) -> bool {
        let Some(jwt) = creds_jwt(creds) else {
            return false;
        };
        let Ok(c) = verify(jwt) else {
            return false;
        };
        let (publish, subscribe, resp) = app_permissions(app, extra);
        c.iss == self.key.public_key()
            && matches!(&c.nats, Nats::User { publish: p, subscribe: s, resp: r, .. }
                if *p == publish && *s == subscribe && r.as_ref() == Some(&resp))
    }
}

/// The user JWT of a `.creds` text.
pub fn creds_jwt(creds: &str) -> Option<&str> {
    let mut lines = creds.lines();
    lines.find(|l| l.starts_with("-----BEGIN NATS USER JWT"))?;
    lines.next().map(str::trim)
}

/// The account a user JWT (or a `.creds` text) belongs to: its
/// `issuer_account`, else its issuer.
pub fn user_account(creds_or_jwt: &str) -> Option<String> {
    let jwt = creds_jwt(creds_or_jwt).unwrap_or(creds_or_jwt);
    let c = verify(jwt).ok()?;
    match c.nats {
        Nats::User { issuer_account, .. } if !issuer_account.is_empty() => Some(issuer_account),
        Nats::User { .. } => Some(c.iss),
        _ => None,
    }
}

/// Mint app `app`'s user: a fresh nkey and its JWT signed by the account's
/// `signing_key` for `account` (the account's public nkey). Returns the
/// user's public key and the `.creds` text.
pub fn mint_app_user(
    app: &str,
    extra: &Extra,
    account: &str,
    signing_key: &KeyPair,
) -> Result<(String, String), JwtError> {
    let user = KeyPair::new_user();
    let (publish, subscribe, resp) = app_permissions(app, extra);
    let issuer_account = if signing_key.public_key() == account {
        String::new()
    } else {
        account.to_owned()
    };
    let c = claims(
        signing_key,
        user.public_key(),
        format!("narun-app-{app}"),
        Nats::User {
            issuer_account,
            publish,
            subscribe,
            resp: Some(resp),
            subs: -1,
            data: -1,
            payload: -1,
            version: 2,
        },
    );
    let jwt = sign(c, signing_key)?;
    let seed = zeroize::Zeroizing::new(user.seed().map_err(|e| JwtError::Sign(e.to_string()))?);
    Ok((user.public_key(), creds(&jwt, &seed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_claims_verify_and_tampering_is_caught() {
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let c = claims(
            &operator,
            account.public_key(),
            "narun",
            Nats::Account {
                limits: AccountLimits::unlimited(),
                signing_keys: vec![],
                version: 2,
            },
        );
        let jwt = sign(c.clone(), &operator).unwrap();
        let back = verify(&jwt).unwrap();
        assert_eq!(back.sub, account.public_key());
        assert_eq!(back.iss, operator.public_key());
        assert!(!back.jti.is_empty());
        assert_eq!(back.nats, c.nats);
        let (head, rest) = jwt.split_once('.').unwrap();
        let (_, sig) = rest.rsplit_once('.').unwrap();
        let mut forged = c;
        forged.name = "other".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(verify(&format!("{head}.{body}.{sig}")).is_err());
        assert!(verify("a.b").is_err());
    }

    #[test]
    fn the_claims_are_nats_jwt_v2() {
        let account = KeyPair::new_account();
        let (_, text) =
            mint_app_user("hello", &Extra::default(), &account.public_key(), &account).unwrap();
        let jwt = text.lines().nth(1).unwrap();
        let body: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(body["nats"]["type"], "user");
        assert_eq!(body["nats"]["version"], 2);
        assert_eq!(body["nats"]["resp"]["max"], 1);
        assert!(
            body["nats"].get("issuer_account").is_none(),
            "signed by the account itself"
        );
        assert!(
            body["nats"]["pub"].get("allow").is_none(),
            "publishes nothing but replies"
        );
        assert!(
            text.contains("-----BEGIN USER NKEY SEED-----\nSU"),
            "{text}"
        );
    }

    #[test]
    fn an_issuer_keeps_what_it_minted_and_names_the_account() {
        let account = KeyPair::new_account();
        let signing = KeyPair::new_account();
        let issuer =
            Issuer::from_seed(&signing.seed().unwrap(), Some(account.public_key())).unwrap();
        let (_, creds) = issuer.mint("a", &Extra::default()).unwrap();
        assert!(issuer.still_valid(&creds, "a", &Extra::default()));
        assert!(
            !issuer.still_valid(&creds, "b", &Extra::default()),
            "another app's"
        );
        let more = Extra {
            publish: vec!["x".into()],
            ..Extra::default()
        };
        assert!(!issuer.still_valid(&creds, "a", &more), "other permissions");
        let other = Issuer::from_seed(&KeyPair::new_account().seed().unwrap(), None).unwrap();
        assert!(
            !other.still_valid(&creds, "a", &Extra::default()),
            "another key's"
        );
        assert_eq!(user_account(&creds), Some(account.public_key()));
        let debug = format!("{issuer:?}");
        assert!(
            !debug.contains(&signing.seed().unwrap()) && debug.contains(&account.public_key()),
            "public keys only in Debug: {debug}"
        );
        assert!(Issuer::from_seed(&KeyPair::new_user().seed().unwrap(), None).is_err());
        assert!(Issuer::from_seed(&signing.seed().unwrap(), Some("UABC".into())).is_err());
    }

    #[test]
    fn an_app_may_serve_only_its_own_subject() {
        let (publish, subscribe, resp) = app_permissions("orders", &Extra::default());
        assert!(publish.allow.is_empty());
        assert_eq!(resp, Responses { max: 1, ttl: 0 });
        assert_eq!(subscribe.allow[0], "orders q");
        for s in &subscribe.allow {
            assert!(
                s.starts_with("orders ")
                    || s.starts_with("$SRV.")
                        && (s.ends_with(".orders")
                            || s.ends_with(".orders.*")
                            || s.matches('.').count() == 1),
                "{s}"
            );
            assert!(!s.contains('>'), "no wide wildcard: {s}");
        }
        let extra = Extra {
            publish: vec!["billing".into()],
            subscribe: vec!["events.orders.>".into()],
            kv: vec!["catalog".into()],
        };
        let (publish, subscribe, _) = app_permissions("orders", &extra);
        assert_eq!(publish.allow[0], "billing");
        assert!(publish
            .allow
            .contains(&"$JS.API.STREAM.INFO.KV_catalog".to_owned()));
        assert!(
            publish.allow[1..].iter().all(|s| s.contains("KV_catalog")),
            "JetStream of that bucket only: {:?}",
            publish.allow
        );
        assert!(subscribe.allow.contains(&"events.orders.>".to_owned()));
        assert!(
            subscribe.allow.contains(&"_INBOX_orders.>".to_owned()),
            "its own inbox, for its requests' replies"
        );
        assert!(!subscribe.allow.contains(&"_INBOX.>".to_owned()));
    }
}

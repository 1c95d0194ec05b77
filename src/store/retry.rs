//! Riding out what a NATS cluster does normally.
//!
//! Right after a cluster forms, while a meta or stream leader is elected,
//! and while a client fails over from a server that went away, JetStream
//! API calls go unanswered (a request sent before the server's JetStream
//! joined the cluster is never answered at all) or answer "temporarily
//! unavailable". Such a call is tried again, with a short limit per attempt
//! that grows (1 s, 2 s, 4 s) and a backoff between failures, until the
//! caller's patience runs out; any other error is returned at once.
//!
//! The schedule and the classification are pure functions
//! ([`attempt_limit`], [`backoff`], [`is_transient`]); [`patiently`] runs
//! them.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::StoreError;

/// How long a call of a long-running component (the node agent, `narun
/// dev`) keeps trying before it reports the error; the CLI uses its
/// `--timeout` instead.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(30);

/// JetStream error codes that mean "not now": no meta leader yet
/// (10008 "JetStream system temporarily unavailable"), not the leader
/// (10009), cluster not active or incomplete (10006, 10004), no peers to
/// place replicas on while a server is down (10005).
const TRANSIENT_CODES: [u16; 5] = [10004, 10005, 10006, 10008, 10009];

/// Time allowed for attempt `n` (1-based): 1 s, 2 s, then 4 s.
pub fn attempt_limit(n: u32) -> Duration {
    Duration::from_secs(1 << n.clamp(1, 3).saturating_sub(1))
}

/// Pause after failed attempt `n` (1-based): 100 ms doubling to 2 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_millis(100u64 << n.clamp(1, 6).saturating_sub(1)).min(Duration::from_secs(2))
}

/// Is `error` one a retry can cure (a timeout, no responders, a leader
/// election)?
///
/// async-nats has one error kind enum per operation, most of which fold a
/// timeout or an API error into their own variant without a typed source,
/// so the error is judged by its text (its kind and every source), which
/// every one of them spells the same way: "timed out", "no responders",
/// "error code NNNNN".
pub fn is_transient(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    is_transient_text(&text.to_ascii_lowercase())
}

fn is_transient_text(text: &str) -> bool {
    const PHRASES: [&str; 5] = [
        "timed out",
        "no responders",
        // async-nats's text for a JetStream API request without responder.
        "requested jetstream resource does not exist",
        "temporarily unavailable",
        "broken pipe",
    ];
    PHRASES.iter().any(|p| text.contains(p))
        || TRANSIENT_CODES
            .iter()
            .any(|c| text.contains(&format!("error code {c}")))
}

/// A call that ran out of patience: the last error, and for how long and
/// how often it was tried.
#[derive(Debug, thiserror::Error)]
#[error("{last} (JetStream did not answer for {waited:.0?}, {attempts} attempts)")]
pub struct GaveUp {
    /// The last attempt's error.
    pub last: async_nats::Error,
    /// Time spent.
    pub waited: Duration,
    /// Attempts made.
    pub attempts: u32,
}

/// Run `op` until it succeeds, fails for good, or `patience` has passed,
/// retrying transient failures ([`is_transient`], or an attempt that ran
/// over its [`attempt_limit`]). The first retry is logged as a warning
/// naming `what` and the error, so a person sees what is being waited for.
/// `op` must be safe to repeat (a read, an idempotent create, a put).
pub async fn patiently<T, E, F, Fut>(
    patience: Duration,
    what: &str,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<async_nats::Error>,
{
    let start = Instant::now();
    let deadline = start + patience;
    let mut n = 0u32;
    loop {
        n += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = attempt_limit(n).min(left).max(Duration::from_millis(1));
        let error: async_nats::Error = match tokio::time::timeout(limit, op()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                let e = e.into();
                if !is_transient(&*e) {
                    return Err(StoreError::nats(what, e));
                }
                e
            }
            Err(_) => format!("no answer within {limit:?}").into(),
        };
        let pause = backoff(n);
        if Instant::now() + pause >= deadline {
            return Err(StoreError::nats(
                what,
                GaveUp {
                    last: error,
                    waited: start.elapsed(),
                    attempts: n,
                },
            ));
        }
        if n == 1 {
            tracing::warn!(
                "{what}: {error}; waiting for JetStream (a leader election or a server \
                 restart?), retrying for up to {:.0?}",
                deadline.saturating_duration_since(Instant::now())
            );
        } else {
            tracing::debug!(attempt = n, error = %error, "{what}: retrying");
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_grows_and_is_capped() {
        let limits: Vec<u64> = (1..=5).map(|n| attempt_limit(n).as_secs()).collect();
        assert_eq!(limits, [1, 2, 4, 4, 4]);
        let pauses: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn timeouts_elections_and_no_responders_are_transient() {
        use async_nats::jetstream::context::RequestErrorKind;
        use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind, RequestError};
        let timed_out = GetStreamError::with_source(
            GetStreamErrorKind::Request,
            RequestError::new(RequestErrorKind::TimedOut),
        );
        assert!(is_transient(&timed_out), "{timed_out}");
        let no_responders = RequestError::new(RequestErrorKind::NoResponders);
        assert!(is_transient(&no_responders), "{no_responders}");
        let kv_timeout = async_nats::jetstream::kv::EntryError::new(
            async_nats::jetstream::kv::EntryErrorKind::TimedOut,
        );
        assert!(is_transient(&kv_timeout), "{kv_timeout}");
        for text in [
            "jetstream error: JetStream system temporarily unavailable (code 503, error code 10008)",
            "jetstream error: no suitable peers for placement (code 503, error code 10005)",
            "broken pipe",
        ] {
            assert!(is_transient_text(&text.to_ascii_lowercase()), "{text}");
        }
    }

    #[test]
    fn real_refusals_are_not_transient() {
        for text in [
            "jetstream error: stream not found (code 404, error code 10059)",
            "jetstream error: wrong last sequence: 4 (code 400, error code 10071)",
            "jetstream error: insufficient resources (code 503, error code 10023)",
            "permissions violation for publish",
            "invalid key",
        ] {
            assert!(!is_transient_text(&text.to_ascii_lowercase()), "{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_or_gives_up_naming_what() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let calls = AtomicU32::new(0);
        let v = patiently(Duration::from_secs(30), "look up", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err::<u32, _>(async_nats::Error::from("request timed out")),
                // Never answers: the attempt limit cuts it.
                1 => std::future::pending().await,
                _ => Ok(7),
            }
        })
        .await
        .unwrap();
        assert_eq!((v, calls.load(Ordering::SeqCst)), (7, 3));

        let calls = AtomicU32::new(0);
        let e = patiently(Duration::from_secs(30), "look up", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(async_nats::Error::from(
                "stream not found (code 404, error code 10059)",
            ))
        })
        .await
        .unwrap_err();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a real refusal is not retried"
        );
        assert!(
            e.to_string().starts_with("look up: stream not found"),
            "{e}"
        );

        let start = Instant::now();
        let e = patiently(
            Duration::from_secs(10),
            "cannot look up stream X",
            || async { std::future::pending::<Result<(), async_nats::Error>>().await },
        )
        .await
        .unwrap_err();
        let waited = start.elapsed();
        assert!(waited <= Duration::from_secs(10), "{waited:?}");
        assert!(waited >= Duration::from_secs(8), "{waited:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("cannot look up stream X: no answer within")
                && text.contains("JetStream did not answer for"),
            "{text}"
        );
    }
}

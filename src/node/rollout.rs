//! One rollout step's view of systemd: each narun unit as the plan sees it
//! ([`Observed`]), its health read through [`UnitManager`]. The decisions
//! are [`super::reconcile::plan`] and [`super::reconcile::health`]; this is
//! the I/O around them, tested against a recording fake unit manager
//! (timelines of whole rollouts below).

use std::collections::{BTreeMap, BTreeSet};

use super::reconcile::{health, Health, Observed, Readiness};
use super::units;
use crate::spec;
use crate::systemd::{UnitManager, UnitState};

/// Readiness of an app whose spec is not known (yet): the defaults.
pub fn default_readiness() -> Readiness {
    Readiness {
        notify: false,
        check: false,
        stable: spec::DEFAULT_STABLE_PERIOD.0,
        deadline: spec::DEFAULT_PROGRESS_DEADLINE.0,
    }
}

/// The narun units in `actual` as the plan sees them, at `now_usec`
/// (CLOCK_REALTIME µs). `was_ready`: (unit, hash) seen ready before; units
/// found ready are added, units gone are forgotten.
pub async fn observe<M: UnitManager>(
    sd: &M,
    actual: &[UnitState],
    readiness: &BTreeMap<String, Readiness>,
    was_ready: &mut BTreeSet<(String, String)>,
    now_usec: u64,
) -> Vec<Observed> {
    let mut out = Vec::new();
    for u in actual {
        let Some((app, index, next)) = units::parse_unit(&u.name) else {
            continue;
        };
        let hash = units::hash_from_description(&u.description).map(str::to_owned);
        let key = (u.name.clone(), hash.clone().unwrap_or_default());
        let ready_before = was_ready.contains(&key);
        let health = if ready_before && u.active_state == "active" {
            Health::Ready
        } else {
            let r = readiness
                .get(&app)
                .copied()
                .unwrap_or_else(default_readiness);
            match sd.details(&u.name).await {
                Ok(Some(d)) => health(&d, &r, now_usec, ready_before),
                _ => Health::Pending,
            }
        };
        if health == Health::Ready {
            was_ready.insert(key);
        }
        out.push(Observed {
            name: u.name.clone(),
            app,
            index,
            next,
            hash,
            health,
        });
    }
    let names: BTreeSet<&str> = actual.iter().map(|u| u.name.as_str()).collect();
    was_ready.retain(|(n, _)| names.contains(n.as_str()));
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::node::reconcile::{plan, Action, Desired};
    use crate::node::testkit::FakeUnits;
    use crate::systemd::{Prop, TransientUnit};

    fn transient(name: String, app: &str, hash: &str, notify: bool) -> TransientUnit {
        TransientUnit {
            name,
            properties: vec![
                (
                    "Description".into(),
                    Prop::Str(units::description(app, 0, hash)),
                ),
                (
                    "Type".into(),
                    Prop::Str(if notify { "notify" } else { "exec" }.into()),
                ),
            ],
        }
    }

    fn desired(hash: &str, notify: bool) -> Desired {
        Desired {
            app: "hello".into(),
            index: 0,
            hash: hash.into(),
            unit: transient(units::unit_name("hello", 0), "hello", hash, notify),
            next: transient(units::next_unit_name("hello", 0), "hello", hash, notify),
        }
    }

    /// The agent's step, with the fake: observe, plan, apply.
    struct Node {
        sd: FakeUnits,
        readiness: BTreeMap<String, Readiness>,
        was_ready: BTreeSet<(String, String)>,
        rolled_back: BTreeMap<(String, u32), String>,
    }

    impl Node {
        fn new(readiness: Readiness) -> Node {
            Node {
                sd: FakeUnits::default(),
                readiness: [("hello".to_owned(), readiness)].into(),
                was_ready: BTreeSet::new(),
                rolled_back: BTreeMap::new(),
            }
        }

        fn advance(&self, d: Duration) {
            self.sd.advance(d);
        }

        /// One step: the actions taken, as "start UNIT" / "stop UNIT" /
        /// "roll back UNIT: reason".
        async fn step(&mut self, want: &Desired) -> Vec<String> {
            let now = self.sd.now_usec();
            let actual = self.sd.list(units::UNIT_GLOB).await.unwrap();
            let observed =
                observe(&self.sd, &actual, &self.readiness, &mut self.was_ready, now).await;
            let actions = plan(
                std::slice::from_ref(want),
                &observed,
                &BTreeSet::new(),
                &self.rolled_back,
            );
            let mut done = Vec::new();
            for a in actions {
                match a {
                    Action::Start(u) => {
                        self.sd.start_transient_queued(&u).await.unwrap();
                        done.push(format!("start {}", u.name));
                    }
                    Action::Stop(n) => {
                        self.sd.stop(&n).await.unwrap();
                        done.push(format!("stop {n}"));
                    }
                    Action::RollBack {
                        app,
                        index,
                        hash,
                        unit,
                        reason,
                    } => {
                        self.rolled_back.insert((app, index), hash);
                        self.sd.stop(&unit).await.unwrap();
                        done.push(format!("roll back {unit}: {reason}"));
                    }
                }
            }
            done
        }
    }

    const MAIN: &str = "narun-app@hello.service";
    const NEXT: &str = "narun-app@hello.next.service";

    fn notify() -> Readiness {
        Readiness {
            notify: true,
            check: false,
            stable: Duration::from_secs(2),
            deadline: Duration::from_secs(60),
        }
    }

    /// v1 runs under the main name, ready.
    async fn running_v1(readiness: Readiness) -> Node {
        let mut node = Node::new(readiness);
        node.sd.advance(Duration::from_secs(1_000));
        let v1 = desired("h1", readiness.notify);
        assert_eq!(node.step(&v1).await, [format!("start {MAIN}")]);
        node.sd.set(MAIN, "active", "running", |_| {});
        node.advance(Duration::from_secs(3));
        assert_eq!(node.step(&v1).await, Vec::<String>::new());
        node
    }

    #[tokio::test]
    async fn a_notify_rollout_surges_waits_for_ready_then_moves_back() {
        let mut node = running_v1(notify()).await;
        let v2 = desired("h2", true);
        // (what happens before the step, the actions of the step)
        let start_next = format!("start {NEXT}");
        let stop_main = format!("stop {MAIN}");
        let start_main = format!("start {MAIN}");
        let stop_next = format!("stop {NEXT}");
        assert_eq!(node.step(&v2).await, [start_next]);
        // Activating (no READY=1 yet): both run, nothing else happens.
        node.advance(Duration::from_secs(5));
        assert!(node.step(&v2).await.is_empty());
        assert_eq!(node.sd.names(), [NEXT, MAIN]);
        // READY=1: the old one stops.
        node.sd.set(NEXT, "active", "running", |_| {});
        assert_eq!(node.step(&v2).await, [stop_main]);
        // Back to the main name, the same way.
        assert_eq!(node.step(&v2).await, [start_main]);
        assert!(node.step(&v2).await.is_empty());
        node.sd.set(MAIN, "active", "running", |_| {});
        assert_eq!(node.step(&v2).await, [stop_next]);
        assert!(node.step(&v2).await.is_empty());
        assert_eq!(node.sd.names(), [MAIN]);
        assert!(node.sd.description(MAIN).unwrap().contains("h2"));
    }

    #[tokio::test]
    async fn failed_new_versions_are_rolled_back_and_not_retried() {
        let exec = Readiness {
            notify: false,
            check: false,
            stable: Duration::from_secs(2),
            deadline: Duration::from_secs(60),
        };
        // (readiness, what happens to the new version, reason)
        type Fate = fn(&Node);
        let cases: [(Readiness, Fate, &str); 3] = [
            (
                exec,
                |n| {
                    n.sd.set(NEXT, "activating", "auto-restart", |d| {
                        d.exec_main_code = 1;
                        d.exec_main_status = 1;
                    })
                },
                "exited with status 1 before it was ready",
            ),
            (
                exec,
                |n| {
                    n.advance(Duration::from_secs(1));
                    n.sd.set(NEXT, "active", "running", |d| {
                        d.n_restarts = 1;
                        d.exec_main_code = 2;
                        d.exec_main_status = 9;
                    })
                },
                "restarted 1 time before it was ready (last: killed by signal 9)",
            ),
            (
                notify(),
                |n| n.advance(Duration::from_secs(61)),
                "not ready within 60s",
            ),
        ];
        for (readiness, fate, reason) in cases {
            let mut node = running_v1(readiness).await;
            let v2 = desired("h2", readiness.notify);
            assert_eq!(node.step(&v2).await, [format!("start {NEXT}")], "{reason}");
            fate(&node);
            assert_eq!(
                node.step(&v2).await,
                [format!("roll back {NEXT}: {reason}")]
            );
            // The old version never stopped; the failed one is not retried.
            for _ in 0..3 {
                node.advance(Duration::from_secs(30));
                assert!(node.step(&v2).await.is_empty(), "{reason}");
            }
            assert_eq!(node.sd.names(), [MAIN], "{reason}");
            let calls = node.sd.calls();
            assert!(
                !calls.contains(&format!("stop {MAIN}")),
                "{reason}: {calls:?}"
            );
            // A newer version is tried.
            let v3 = desired("h3", readiness.notify);
            assert_eq!(node.step(&v3).await, [format!("start {NEXT}")], "{reason}");
        }
    }

    #[tokio::test]
    async fn a_stable_period_replaces_only_after_the_period() {
        let exec = Readiness {
            notify: false,
            check: false,
            stable: Duration::from_secs(2),
            deadline: Duration::from_secs(60),
        };
        let mut node = running_v1(exec).await;
        let v2 = desired("h2", false);
        assert_eq!(node.step(&v2).await, [format!("start {NEXT}")]);
        node.advance(Duration::from_millis(1900));
        assert!(node.step(&v2).await.is_empty());
        node.advance(Duration::from_millis(200));
        assert_eq!(node.step(&v2).await, [format!("stop {MAIN}")]);
    }
}

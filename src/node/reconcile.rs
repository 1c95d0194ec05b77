//! The reconcile and rollout plan, and readiness, as pure functions: what
//! the node wants (one replica per slot `(app, index)`, at a spec hash) and
//! what systemd has (up to two units per slot) go in, actions come out. The
//! agent's executor applies them; nothing here does I/O.
//!
//! A slot has two unit names: `narun-app@<app>[:<i>].service` (main) and
//! `narun-app@<app>[:<i>].next.service` (next). A new version of a running
//! replica starts in the free name next to the old one (surge); once it is
//! ready the old one stops (SIGTERM: the consumer library drains). A
//! replica that ends up in `next` moves back to `main` the same way, so in
//! the steady state every replica runs under its main name (`systemctl
//! status narun-app@hello` works). A new version that exits, restarts, or
//! is not ready within the deadline is stopped and the old one keeps
//! serving (rolled back). One slot of an app is replaced at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::systemd::{ServiceDetails, TransientUnit};

/// One replica this node should run.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub app: String,
    pub index: u32,
    pub hash: String,
    /// The unit under its main name.
    pub unit: TransientUnit,
    /// The same replica under its next name (for a surge).
    pub next: TransientUnit,
}

/// Is a unit ready to take the traffic of the one it replaces?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// Starting, or up for less than the stable period.
    Pending,
    /// Exited, restarted, or not ready within the deadline: why.
    Failed(String),
}

/// A narun unit systemd has, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub name: String,
    pub app: String,
    pub index: u32,
    /// Under the slot's next name.
    pub next: bool,
    /// The spec hash in its description (none for a unit made by hand).
    pub hash: Option<String>,
    pub health: Health,
}

/// What to do to converge.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a unit (a new replica, a surge, or the move back to main).
    Start(TransientUnit),
    /// Stop a unit (replaced, scaled away, or its app deleted).
    Stop(String),
    /// The new version of a slot failed: stop `unit`; the previous version
    /// keeps serving, and `hash` is not tried again on this slot until the
    /// spec changes.
    RollBack {
        app: String,
        index: u32,
        hash: String,
        unit: String,
        reason: String,
    },
}

impl Action {
    /// The unit the action is about.
    pub fn unit_name(&self) -> &str {
        match self {
            Action::Start(u) => &u.name,
            Action::Stop(n) => n,
            Action::RollBack { unit, .. } => unit,
        }
    }
}

/// Plan the actions that turn `actual` into `desired`.
///
/// - Units of apps in `hold` are left alone (e.g. the new version of an app
///   cannot be fetched yet: the old one keeps serving).
/// - `rolled_back`: per slot, a hash that failed there (not retried).
/// - A unit whose hash is the desired one is kept, whatever its state:
///   systemd owns restarts, and a unit that hit its start limit stays
///   failed (and visible) until the spec or binary changes.
/// - New replicas start together; running ones are replaced one slot of an
///   app at a time, lowest index first; excess replicas stop highest first.
pub fn plan(
    desired: &[Desired],
    actual: &[Observed],
    hold: &BTreeSet<String>,
    rolled_back: &BTreeMap<(String, u32), String>,
) -> Vec<Action> {
    type Slot<'a> = (Option<&'a Observed>, Option<&'a Observed>);
    let mut slots: BTreeMap<(&str, u32), Slot> = BTreeMap::new();
    for o in actual {
        let e = slots.entry((o.app.as_str(), o.index)).or_default();
        if o.next {
            e.1 = Some(o);
        } else {
            e.0 = Some(o);
        }
    }
    let want: BTreeMap<(&str, u32), &Desired> = desired
        .iter()
        .map(|d| ((d.app.as_str(), d.index), d))
        .collect();

    // Slots nobody wants: stop, highest index first.
    let mut stops: Vec<(&str, u32, &str)> = Vec::new();
    for ((app, index), (main, next)) in &slots {
        if want.contains_key(&(*app, *index)) || hold.contains(*app) {
            continue;
        }
        for u in [next, main].into_iter().flatten() {
            stops.push((app, *index, u.name.as_str()));
        }
    }
    stops.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
    let mut actions: Vec<Action> = stops
        .into_iter()
        .map(|(_, _, n)| Action::Stop(n.to_owned()))
        .collect();

    // An app is busy while one of its slots is mid-rollout (two units, or
    // its replica under the next name): no other slot starts a surge.
    let mut busy: BTreeMap<&str, u32> = BTreeMap::new();
    for ((app, index), (_, n)) in &slots {
        if n.is_some() && want.contains_key(&(*app, *index)) {
            busy.entry(app).or_insert(*index);
        }
    }
    let free = |busy: &BTreeMap<&str, u32>, app: &str, index: u32| {
        busy.get(app).is_none_or(|i| *i == index)
    };

    for d in desired {
        if hold.contains(&d.app) {
            continue;
        }
        let (main, next) = slots
            .get(&(d.app.as_str(), d.index))
            .copied()
            .unwrap_or_default();
        let is_new = |u: Option<&Observed>| u.is_some_and(|u| u.hash.as_deref() == Some(&d.hash));
        let failed_here = rolled_back.get(&(d.app.clone(), d.index)) == Some(&d.hash);
        let roll_back = |u: &Observed, reason: &str| Action::RollBack {
            app: d.app.clone(),
            index: d.index,
            hash: d.hash.clone(),
            unit: u.name.clone(),
            reason: reason.to_owned(),
        };
        match (main, next) {
            // Steady state.
            (Some(_), None) if is_new(main) => {}
            (None, Some(_)) if is_new(next) && failed_here => {}
            // Both generations: the new one decides.
            (Some(m), Some(n)) => {
                let (new, old) = if is_new(main) {
                    (m, n)
                } else if is_new(next) {
                    (n, m)
                } else {
                    // Neither is wanted (a newer spec arrived mid-rollout):
                    // keep the main one, start over from there.
                    actions.push(Action::Stop(n.name.clone()));
                    continue;
                };
                match &new.health {
                    Health::Ready => actions.push(Action::Stop(old.name.clone())),
                    Health::Pending => {}
                    Health::Failed(why) => actions.push(roll_back(new, why)),
                }
            }
            // The new version runs under the next name alone: move it back
            // to main (a second surge, same version), or start it again if
            // it died since.
            (None, Some(n)) if is_new(next) => match n.health {
                Health::Ready | Health::Failed(_) if free(&busy, &d.app, d.index) => {
                    actions.push(Action::Start(d.unit.clone()))
                }
                _ => {}
            },
            // An old version (or a unit made by hand): surge next to it,
            // one slot of the app at a time.
            (Some(_), None) | (None, Some(_)) => {
                if failed_here || !free(&busy, &d.app, d.index) {
                    continue;
                }
                busy.insert(d.app.as_str(), d.index);
                actions.push(Action::Start(if main.is_some() {
                    d.next.clone()
                } else {
                    d.unit.clone()
                }));
            }
            // A new replica (deploy, scale up): nothing to replace.
            (None, None) => actions.push(Action::Start(d.unit.clone())),
        }
    }
    actions
}

/// What "ready" means for an app's replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The app sends `READY=1` (`Type=notify`): ready when systemd says
    /// the unit is active.
    pub notify: bool,
    /// A health check runs as `ExecStartPost=`: ready when systemd says
    /// the unit is active (the check passed).
    pub check: bool,
    /// Otherwise: ready once up this long without a restart.
    pub stable: Duration,
    /// Not ready within this time since the start: failed.
    pub deadline: Duration,
}

/// Why the main process is not running, in words.
pub fn exit_reason(d: &ServiceDetails) -> String {
    match d.exec_main_code {
        1 => format!("exited with status {}", d.exec_main_status),
        2 => format!("killed by signal {}", d.exec_main_status),
        3 => format!("dumped core (signal {})", d.exec_main_status),
        _ if !d.result.is_empty() && d.result != "success" => {
            format!("systemd result {}", d.result)
        }
        _ => "did not start".into(),
    }
}

/// The health of a unit at `now_usec` (CLOCK_REALTIME µs, as systemd's
/// timestamps). `was_ready`: the agent saw this unit ready before.
pub fn health(d: &ServiceDetails, r: &Readiness, now_usec: u64, was_ready: bool) -> Health {
    let active = d.active_state == "active";
    let since = |t: u64| Duration::from_micros(now_usec.saturating_sub(t));
    if was_ready {
        return match d.active_state.as_str() {
            "active" | "reloading" | "activating" => {
                if active {
                    Health::Ready
                } else {
                    Health::Pending
                }
            }
            _ => Health::Failed(exit_reason(d)),
        };
    }
    if d.n_restarts > 0 {
        return Health::Failed(format!(
            "restarted {} time{} before it was ready (last: {})",
            d.n_restarts,
            if d.n_restarts == 1 { "" } else { "s" },
            exit_reason(d)
        ));
    }
    match (d.active_state.as_str(), d.sub_state.as_str()) {
        ("activating", "auto-restart")
        | ("active", "exited")
        | ("failed", _)
        | ("inactive", _)
        | ("deactivating", _) => Health::Failed(format!("{} before it was ready", exit_reason(d))),
        ("active", _) if r.notify || r.check => Health::Ready,
        ("active", _) if since(d.active_enter_usec) >= r.stable => Health::Ready,
        _ if d.inactive_exit_usec > 0 && since(d.inactive_exit_usec) >= r.deadline => {
            Health::Failed(if r.check && d.sub_state == "start-post" {
                format!(
                    "health check did not pass within {}",
                    humantime_secs(r.deadline)
                )
            } else {
                format!("not ready within {}", humantime_secs(r.deadline))
            })
        }
        _ => Health::Pending,
    }
}

fn humantime_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::units::{next_unit_name, unit_name};

    fn desired(app: &str, index: u32, hash: &str) -> Desired {
        let t = |name: String| TransientUnit {
            name,
            properties: vec![],
        };
        Desired {
            app: app.into(),
            index,
            hash: hash.into(),
            unit: t(unit_name(app, index)),
            next: t(next_unit_name(app, index)),
        }
    }

    fn unit(app: &str, index: u32, next: bool, hash: &str, health: Health) -> Observed {
        Observed {
            name: if next {
                next_unit_name(app, index)
            } else {
                unit_name(app, index)
            },
            app: app.into(),
            index,
            next,
            hash: (!hash.is_empty()).then(|| hash.to_owned()),
            health,
        }
    }
    fn main(app: &str, index: u32, hash: &str) -> Observed {
        unit(app, index, false, hash, Health::Ready)
    }
    fn next(app: &str, index: u32, hash: &str, health: Health) -> Observed {
        unit(app, index, true, hash, health)
    }

    fn names(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Start(u) => format!("start {}", u.name),
                Action::Stop(n) => format!("stop {n}"),
                Action::RollBack { unit, reason, .. } => format!("roll back {unit}: {reason}"),
            })
            .collect()
    }

    #[test]
    fn the_plan_table() {
        let failed = |s: &str| Health::Failed(s.into());
        type Case<'a> = (&'a str, Vec<Desired>, Vec<Observed>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            ("nothing to do", vec![], vec![], vec![]),
            (
                "fresh deploy: every replica at once",
                vec![desired("a", 0, "h1"), desired("a", 1, "h1")],
                vec![],
                vec!["start narun-app@a.service", "start narun-app@a:1.service"],
            ),
            (
                "converged (an agent restart adopts units)",
                vec![desired("a", 0, "h1")],
                vec![main("a", 0, "h1")],
                vec![],
            ),
            (
                "scale 1 -> 3",
                vec![
                    desired("a", 0, "h1"),
                    desired("a", 1, "h1"),
                    desired("a", 2, "h1"),
                ],
                vec![main("a", 0, "h1")],
                vec!["start narun-app@a:1.service", "start narun-app@a:2.service"],
            ),
            (
                "scale 3 -> 1 stops the highest index first",
                vec![desired("a", 0, "h1")],
                vec![main("a", 0, "h1"), main("a", 1, "h1"), main("a", 2, "h1")],
                vec!["stop narun-app@a:2.service", "stop narun-app@a:1.service"],
            ),
            (
                "new version: surge next to the old one, one slot at a time",
                vec![desired("a", 0, "h2"), desired("a", 1, "h2")],
                vec![main("a", 1, "h1"), main("a", 0, "h1")],
                vec!["start narun-app@a.next.service"],
            ),
            (
                "surge pending: wait (and no second surge)",
                vec![desired("a", 0, "h2"), desired("a", 1, "h2")],
                vec![
                    main("a", 0, "h1"),
                    next("a", 0, "h2", Health::Pending),
                    main("a", 1, "h1"),
                ],
                vec![],
            ),
            (
                "surge ready: the old one stops",
                vec![desired("a", 0, "h2")],
                vec![main("a", 0, "h1"), next("a", 0, "h2", Health::Ready)],
                vec!["stop narun-app@a.service"],
            ),
            (
                "the new version alone under next: move back to main",
                vec![desired("a", 0, "h2"), desired("a", 1, "h2")],
                vec![next("a", 0, "h2", Health::Ready), main("a", 1, "h1")],
                vec!["start narun-app@a.service"],
            ),
            (
                "main is new and ready: next stops; then slot 1 surges",
                vec![desired("a", 0, "h2"), desired("a", 1, "h2")],
                vec![
                    main("a", 0, "h2"),
                    next("a", 0, "h2", Health::Ready),
                    main("a", 1, "h1"),
                ],
                vec!["stop narun-app@a.next.service"],
            ),
            (
                "slot 0 done: slot 1 surges",
                vec![desired("a", 0, "h2"), desired("a", 1, "h2")],
                vec![main("a", 0, "h2"), main("a", 1, "h1")],
                vec!["start narun-app@a:1.next.service"],
            ),
            (
                "surge failed: roll back",
                vec![desired("a", 0, "h2")],
                vec![
                    main("a", 0, "h1"),
                    next("a", 0, "h2", failed("exited with status 1")),
                ],
                vec!["roll back narun-app@a.next.service: exited with status 1"],
            ),
            (
                "the second hop failed: stay under next",
                vec![desired("a", 0, "h2")],
                vec![
                    unit("a", 0, false, "h2", failed("not ready within 60s")),
                    next("a", 0, "h2", Health::Ready),
                ],
                vec!["roll back narun-app@a.service: not ready within 60s"],
            ),
            (
                "a newer spec mid-rollout: drop the surge, keep main",
                vec![desired("a", 0, "h3")],
                vec![main("a", 0, "h1"), next("a", 0, "h2", Health::Pending)],
                vec!["stop narun-app@a.next.service"],
            ),
            (
                "the old version alone under next: the new one goes to main",
                vec![desired("a", 0, "h3")],
                vec![next("a", 0, "h2", Health::Ready)],
                vec!["start narun-app@a.service"],
            ),
            (
                "a unit without a recorded hash is replaced by a surge",
                vec![desired("a", 0, "h1")],
                vec![main("a", 0, "")],
                vec!["start narun-app@a.next.service"],
            ),
            (
                "a failed unit with the same hash stays failed",
                vec![desired("a", 0, "h1")],
                vec![unit("a", 0, false, "h1", failed("exited with status 1"))],
                vec![],
            ),
            (
                "another app is untouched",
                vec![desired("a", 0, "h1"), desired("b", 0, "h9")],
                vec![main("a", 0, "h1"), main("b", 0, "h9")],
                vec![],
            ),
            (
                "another app rolls out at the same time",
                vec![desired("a", 0, "h2"), desired("b", 0, "h9")],
                vec![main("a", 0, "h1"), main("b", 0, "h8")],
                vec![
                    "start narun-app@a.next.service",
                    "start narun-app@b.next.service",
                ],
            ),
            (
                "deleted app: every unit stops, next first",
                vec![],
                vec![
                    main("gone", 0, "h1"),
                    next("gone", 0, "h2", Health::Pending),
                    main("gone", 1, "h1"),
                ],
                vec![
                    "stop narun-app@gone:1.service",
                    "stop narun-app@gone.next.service",
                    "stop narun-app@gone.service",
                ],
            ),
        ];
        for (what, d, a, want) in cases {
            assert_eq!(
                names(&plan(&d, &a, &BTreeSet::new(), &BTreeMap::new())),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn a_rolled_back_hash_is_not_retried_and_held_apps_are_left_alone() {
        let rb: BTreeMap<(String, u32), String> = [(("a".to_owned(), 0), "h2".to_owned())].into();
        let none = BTreeSet::new();
        // The old version keeps running; nothing starts again.
        assert!(plan(&[desired("a", 0, "h2")], &[main("a", 0, "h1")], &none, &rb).is_empty());
        // A rolled-back second hop stays under next.
        assert!(plan(
            &[desired("a", 0, "h2")],
            &[next("a", 0, "h2", Health::Ready)],
            &none,
            &rb
        )
        .is_empty());
        // A newer version is tried.
        assert_eq!(
            names(&plan(
                &[desired("a", 0, "h3")],
                &[main("a", 0, "h1")],
                &none,
                &rb
            )),
            ["start narun-app@a.next.service"]
        );
        let hold: BTreeSet<String> = ["a".to_owned()].into();
        assert!(plan(
            &[desired("a", 0, "h2")],
            &[main("a", 0, "h1"), main("a", 1, "h1")],
            &hold,
            &BTreeMap::new()
        )
        .is_empty());
    }

    fn details(active: &str, sub: &str) -> ServiceDetails {
        ServiceDetails {
            active_state: active.into(),
            sub_state: sub.into(),
            ..ServiceDetails::default()
        }
    }

    #[test]
    fn the_health_table() {
        let s = 1_000_000u64; // one second in µs
        let exec = Readiness {
            notify: false,
            check: false,
            stable: Duration::from_secs(2),
            deadline: Duration::from_secs(60),
        };
        let notify = Readiness {
            notify: true,
            check: false,
            ..exec
        };
        let check = Readiness {
            check: true,
            ..exec
        };
        let up = |since: u64| ServiceDetails {
            active_enter_usec: 100 * s - since,
            inactive_exit_usec: 100 * s - since,
            ..details("active", "running")
        };
        let now = 100 * s;
        let cases: Vec<(&str, ServiceDetails, Readiness, bool, Health)> = vec![
            ("up 3s > stable 2s", up(3 * s), exec, false, Health::Ready),
            ("up 1s < stable 2s", up(s), exec, false, Health::Pending),
            (
                "notify: active is ready at once",
                up(0),
                notify,
                false,
                Health::Ready,
            ),
            (
                "notify: activating past the deadline",
                ServiceDetails {
                    inactive_exit_usec: now - 61 * s,
                    ..details("activating", "start")
                },
                notify,
                false,
                Health::Failed("not ready within 60s".into()),
            ),
            (
                "notify: activating within the deadline",
                ServiceDetails {
                    inactive_exit_usec: now - 5 * s,
                    ..details("activating", "start")
                },
                notify,
                false,
                Health::Pending,
            ),
            (
                "check: active (it passed) is ready at once",
                up(0),
                check,
                false,
                Health::Ready,
            ),
            (
                "check: still running past the deadline",
                ServiceDetails {
                    inactive_exit_usec: now - 61 * s,
                    ..details("activating", "start-post")
                },
                check,
                false,
                Health::Failed("health check did not pass within 60s".into()),
            ),
            (
                "check: the app itself never started past the deadline",
                ServiceDetails {
                    inactive_exit_usec: now - 61 * s,
                    ..details("activating", "start")
                },
                check,
                false,
                Health::Failed("not ready within 60s".into()),
            ),
            (
                "check: app crashed while the check runs",
                ServiceDetails {
                    exec_main_code: 1,
                    exec_main_status: 1,
                    ..details("activating", "auto-restart")
                },
                check,
                false,
                Health::Failed("exited with status 1 before it was ready".into()),
            ),
            (
                "crashed, waiting for the restart",
                ServiceDetails {
                    exec_main_code: 1,
                    exec_main_status: 3,
                    ..details("activating", "auto-restart")
                },
                exec,
                false,
                Health::Failed("exited with status 3 before it was ready".into()),
            ),
            (
                "restarted and up again",
                ServiceDetails {
                    n_restarts: 2,
                    exec_main_code: 2,
                    exec_main_status: 9,
                    ..up(s)
                },
                exec,
                false,
                Health::Failed(
                    "restarted 2 times before it was ready (last: killed by signal 9)".into(),
                ),
            ),
            (
                "exited 0 (restart: on-failure)",
                ServiceDetails {
                    exec_main_code: 1,
                    exec_main_status: 0,
                    ..details("inactive", "dead")
                },
                exec,
                false,
                Health::Failed("exited with status 0 before it was ready".into()),
            ),
            (
                "exited 0, kept as active (exited) by RemainAfterExit",
                ServiceDetails {
                    exec_main_code: 1,
                    exec_main_status: 0,
                    ..details("active", "exited")
                },
                exec,
                false,
                Health::Failed("exited with status 0 before it was ready".into()),
            ),
            (
                "a job that finished after it was ready: still ready",
                ServiceDetails {
                    exec_main_code: 1,
                    exec_main_status: 0,
                    ..details("active", "exited")
                },
                exec,
                true,
                Health::Ready,
            ),
            (
                "start limit hit",
                ServiceDetails {
                    result: "start-limit-hit".into(),
                    ..details("failed", "failed")
                },
                exec,
                false,
                Health::Failed("systemd result start-limit-hit before it was ready".into()),
            ),
            (
                "was ready, restarted by systemd since: still ready",
                ServiceDetails {
                    n_restarts: 1,
                    ..up(0)
                },
                exec,
                true,
                Health::Ready,
            ),
            (
                "was ready, now between crash and restart",
                details("activating", "auto-restart"),
                exec,
                true,
                Health::Pending,
            ),
        ];
        for (what, d, r, was, want) in cases {
            assert_eq!(health(&d, &r, now, was), want, "{what}");
        }
    }
}

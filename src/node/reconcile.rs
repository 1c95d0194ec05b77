//! The reconcile plan: desired replicas vs units systemd has, as a pure
//! function. The agent's executor applies the actions.

use std::collections::{BTreeMap, BTreeSet};

use super::units::{hash_from_description, parse_unit_name};
use crate::systemd::{TransientUnit, UnitState};

/// One replica this node should run.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub app: String,
    pub index: u32,
    pub hash: String,
    pub unit: TransientUnit,
}

/// What to do to converge.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a replica that has no unit.
    Start(TransientUnit),
    /// Stop the running unit and start this one in its place (the spec for
    /// this node or the binary changed).
    Replace(TransientUnit),
    /// Stop a unit nobody wants any more.
    Stop(String),
}

impl Action {
    pub fn unit_name(&self) -> &str {
        match self {
            Action::Start(u) | Action::Replace(u) => &u.name,
            Action::Stop(n) => n,
        }
    }
}

/// Plan the actions that turn `actual` into `desired`.
///
/// - Units of apps in `hold` are left alone (e.g. the new version of an app
///   cannot be fetched yet: the old one keeps serving).
/// - A unit whose recorded hash equals the desired one is kept, whatever
///   its state: systemd owns restarts, and a unit that hit its start limit
///   stays failed (and visible) until the spec or binary changes.
/// - Starts go lowest index first; stops of excess replicas highest first.
pub fn plan(desired: &[Desired], actual: &[UnitState], hold: &BTreeSet<String>) -> Vec<Action> {
    let have: BTreeMap<&str, &UnitState> = actual
        .iter()
        .filter(|u| parse_unit_name(&u.name).is_some())
        .map(|u| (u.name.as_str(), u))
        .collect();
    let want: BTreeMap<&str, &Desired> =
        desired.iter().map(|d| (d.unit.name.as_str(), d)).collect();

    let mut stops: Vec<(String, u32, String)> = have
        .keys()
        .filter(|name| !want.contains_key(*name))
        .filter_map(|name| {
            let (app, idx) = parse_unit_name(name)?;
            (!hold.contains(&app)).then(|| (app, idx, (*name).to_owned()))
        })
        .collect();
    stops.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));

    let mut changes: Vec<&Desired> = desired
        .iter()
        .filter(|d| !hold.contains(&d.app))
        .filter(|d| match have.get(d.unit.name.as_str()) {
            None => true,
            Some(u) => hash_from_description(&u.description) != Some(d.hash.as_str()),
        })
        .collect();
    changes.sort_by(|a, b| a.app.cmp(&b.app).then(a.index.cmp(&b.index)));

    let mut actions: Vec<Action> = stops.into_iter().map(|(_, _, n)| Action::Stop(n)).collect();
    actions.extend(changes.into_iter().map(|d| {
        if have.contains_key(d.unit.name.as_str()) {
            Action::Replace(d.unit.clone())
        } else {
            Action::Start(d.unit.clone())
        }
    }));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::units::{description, unit_name};

    fn desired(app: &str, index: u32, hash: &str) -> Desired {
        Desired {
            app: app.into(),
            index,
            hash: hash.into(),
            unit: TransientUnit {
                name: unit_name(app, index),
                properties: vec![],
            },
        }
    }

    fn running(app: &str, index: u32, hash: &str) -> UnitState {
        UnitState {
            name: unit_name(app, index),
            description: description(app, index, hash),
            active_state: "active".into(),
            sub_state: "running".into(),
        }
    }

    fn names(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Start(u) => format!("start {}", u.name),
                Action::Replace(u) => format!("replace {}", u.name),
                Action::Stop(n) => format!("stop {n}"),
            })
            .collect()
    }

    #[test]
    fn the_plan_table() {
        let none = BTreeSet::new();
        type Case<'a> = (&'a str, Vec<Desired>, Vec<UnitState>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            ("nothing to do", vec![], vec![], vec![]),
            (
                "fresh deploy",
                vec![desired("a", 0, "h1"), desired("a", 1, "h1")],
                vec![],
                vec!["start narun-app@a.service", "start narun-app@a:1.service"],
            ),
            (
                "already converged (an agent restart adopts units)",
                vec![desired("a", 0, "h1")],
                vec![running("a", 0, "h1")],
                vec![],
            ),
            (
                "scale 1 -> 3",
                vec![
                    desired("a", 0, "h1"),
                    desired("a", 1, "h1"),
                    desired("a", 2, "h1"),
                ],
                vec![running("a", 0, "h1")],
                vec!["start narun-app@a:1.service", "start narun-app@a:2.service"],
            ),
            (
                "scale 3 -> 1 stops the highest index first",
                vec![desired("a", 0, "h1")],
                vec![
                    running("a", 0, "h1"),
                    running("a", 1, "h1"),
                    running("a", 2, "h1"),
                ],
                vec!["stop narun-app@a:2.service", "stop narun-app@a:1.service"],
            ),
            (
                "a changed hash replaces, in index order",
                vec![desired("a", 0, "h2"), desired("a", 1, "h2")],
                vec![running("a", 1, "h1"), running("a", 0, "h1")],
                vec![
                    "replace narun-app@a.service",
                    "replace narun-app@a:1.service",
                ],
            ),
            (
                "another app is untouched",
                vec![desired("a", 0, "h1"), desired("b", 0, "h9")],
                vec![running("a", 0, "h1"), running("b", 0, "h9")],
                vec![],
            ),
            (
                "deleted app is stopped",
                vec![],
                vec![running("gone", 0, "h1"), running("gone", 1, "h1")],
                vec![
                    "stop narun-app@gone:1.service",
                    "stop narun-app@gone.service",
                ],
            ),
            (
                "a unit without a recorded hash is replaced",
                vec![desired("a", 0, "h1")],
                vec![UnitState {
                    name: unit_name("a", 0),
                    description: "hand made".into(),
                    active_state: "active".into(),
                    sub_state: "running".into(),
                }],
                vec!["replace narun-app@a.service"],
            ),
            (
                "a failed unit with the same hash stays failed",
                vec![desired("a", 0, "h1")],
                vec![UnitState {
                    active_state: "failed".into(),
                    sub_state: "failed".into(),
                    ..running("a", 0, "h1")
                }],
                vec![],
            ),
            (
                "foreign units are ignored",
                vec![],
                vec![UnitState {
                    name: "nginx.service".into(),
                    description: "nginx".into(),
                    active_state: "active".into(),
                    sub_state: "running".into(),
                }],
                vec![],
            ),
        ];
        for (what, d, a, want) in cases {
            assert_eq!(names(&plan(&d, &a, &none)), want, "{what}");
        }
    }

    #[test]
    fn held_apps_keep_their_units() {
        let hold: BTreeSet<String> = ["a".to_owned()].into();
        let actions = plan(
            &[desired("a", 0, "h2")],
            &[running("a", 0, "h1"), running("a", 1, "h1")],
            &hold,
        );
        assert!(actions.is_empty(), "{actions:?}");
    }
}

//! Runs one property: a fixed number of cases (the short run of `cargo
//! test`), or batches of cases with fresh seeds until a deadline (the long
//! run of `scripts/fuzz-long.sh`).
//!
//! - `PROPTEST_CASES=n`: cases per run (per batch in a long run) instead of
//!   the property's default.
//! - `NARUN_PROPS_SECS=s`: run batches until `s` seconds have passed.
//! - `NARUN_PROPS_SEED=n`: use this seed (one batch): replays a failure
//!   with the `PROPTEST_CASES` it printed.
//!
//! Each property prints `props: <name>: <cases> cases ...` on stderr
//! (shown with `--nocapture`).

use std::collections::hash_map::RandomState;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{name}={text:?} does not parse"),
    }
}

fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.finish()
}

/// Checks `test` on values of `strategy`: `default_cases` of them, or as
/// the knobs above say. Panics with the minimized failing input.
pub fn check<S>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let cases = env::<u32>("PROPTEST_CASES").unwrap_or(default_cases).max(1);
    let secs = env::<f64>("NARUN_PROPS_SECS");
    let fixed_seed = env::<u64>("NARUN_PROPS_SEED");
    let start = Instant::now();
    let (mut total, mut batches) = (0u64, 0u64);
    loop {
        let seed = fixed_seed.unwrap_or_else(random_seed);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            ..Config::default()
        });
        match runner.run(&strategy, &test) {
            Ok(()) => {}
            Err(TestError::Fail(why, input)) => panic!(
                "property {name} failed after {total} earlier cases: {why}\n\
                 minimal failing input: {input:#?}\n\
                 replay: NARUN_PROPS_SEED={seed} PROPTEST_CASES={cases} \
                 cargo test --test props {name}"
            ),
            Err(TestError::Abort(why)) => panic!("property {name} aborted: {why}"),
        }
        total += u64::from(cases);
        batches += 1;
        let more = secs.is_some_and(|s| start.elapsed().as_secs_f64() < s);
        if fixed_seed.is_some() || !more {
            break;
        }
    }
    eprintln!(
        "props: {name}: {total} cases in {batches} batch(es), {:.1}s",
        start.elapsed().as_secs_f64()
    );
}

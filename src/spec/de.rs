//! Lenient scalar decoding (as Go's yaml.v3 into a `string`: `value: 8080`
//! is the string `"8080"`, `value:` is `""`) and the strict enum/duration
//! decoders with their "did you mean" messages.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{Mode, Network, RestartPolicy, SpecDuration};

/// The closest of `candidates` to `got`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(got: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = got.to_ascii_lowercase();
    if let Some(c) = candidates.iter().find(|c| c.to_ascii_lowercase() == lower) {
        return Some(c);
    }
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn hint(got: &str, candidates: &[&str]) -> String {
    match did_you_mean(got, candidates) {
        Some(c) => format!(" (did you mean {c:?}?)"),
        None => String::new(),
    }
}

struct ScalarString;

impl<'de> Visitor<'de> for ScalarString {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        // Floats normally arrive as their source text (see parse.rs); this
        // is the fallback.
        Ok(format!("{v:?}"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

/// A string field: any scalar is its text, null is `""`.
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(ScalarString)
}

/// A list or section written with no value (`env:`) is empty, as in Go.
pub(crate) fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct Lenient(#[serde(deserialize_with = "string")] String);

/// A list of strings (each lenient); null is empty.
pub(crate) fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v: Option<Vec<Lenient>> = Option::deserialize(d)?;
    Ok(v.unwrap_or_default().into_iter().map(|l| l.0).collect())
}

/// A string → string map (values lenient); null is empty.
pub(crate) fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let v: Option<BTreeMap<Lenient, Lenient>> = Option::deserialize(d)?;
    Ok(v.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.0, v.0))
        .collect())
}

impl PartialEq for Lenient {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Lenient {}
impl PartialOrd for Lenient {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Lenient {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// One string or a list of strings.
pub(crate) fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Lenient(s)) = seq.next_element()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A number, also written as text (`.5`, as the YAML source had it).
pub(crate) fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
            Ok(0.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse::<f64>()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

/// Deserialize a keyword enum from a string (null = `default`), with a
/// "did you mean" for near misses and `extra` for known non-values.
fn keyword<'de, D, T>(
    d: D,
    what: &'static str,
    values: &'static [(&'static str, T)],
    default: Option<T>,
    extra: fn(&str) -> Option<String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Copy,
{
    struct V<T: 'static> {
        what: &'static str,
        values: &'static [(&'static str, T)],
        default: Option<T>,
        extra: fn(&str) -> Option<String>,
    }
    impl<'de, T: Copy> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            let names: Vec<&str> = self.values.iter().map(|(n, _)| *n).collect();
            write!(f, "{} ({})", self.what, names.join(", "))
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            self.default
                .ok_or_else(|| E::invalid_type(de::Unexpected::Unit, &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            if let Some((_, t)) = self.values.iter().find(|(n, _)| *n == v) {
                return Ok(*t);
            }
            if let Some(msg) = (self.extra)(v) {
                return Err(E::custom(msg));
            }
            let names: Vec<&str> = self.values.iter().map(|(n, _)| *n).collect();
            Err(E::custom(format!(
                "{v:?} is not a valid {}: expected one of {}{}",
                self.what,
                names.join(", "),
                hint(v, &names)
            )))
        }
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<T, A::Error> {
            Err(de::Error::invalid_type(de::Unexpected::Map, &self))
        }
    }
    d.deserialize_any(V {
        what,
        values,
        default,
        extra,
    })
}

fn no_extra(_: &str) -> Option<String> {
    None
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(
            d,
            "mode",
            &[("exec", Mode::Exec), ("landlock", Mode::Landlock)],
            Some(Mode::Exec),
            |v| {
                (v == "jail").then(|| {
                    "mode \"jail\" (FreeBSD jails) is FreeBSD only: narun runs apps under \
                     systemd on Linux; use exec or landlock"
                        .to_owned()
                })
            },
        )
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(
            d,
            "network",
            &[("host", Network::Host), ("none", Network::None)],
            None,
            no_extra,
        )
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(
            d,
            "restart policy",
            &[
                ("always", RestartPolicy::Always),
                ("on-failure", RestartPolicy::OnFailure),
                ("never", RestartPolicy::Never),
            ],
            Some(RestartPolicy::OnFailure),
            |v| {
                matches!(v, "on_failure" | "onFailure" | "no" | "false").then(|| {
                    let want = if v.starts_with('o') {
                        "on-failure"
                    } else {
                        "never"
                    };
                    format!("{v:?} is not a valid restart policy: write {want:?}")
                })
            },
        )
    }
}

impl<'de> Deserialize<'de> for SpecDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SpecDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 10s, 2m or 1h")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SpecDuration, E> {
                Ok(SpecDuration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SpecDuration, E> {
                u64::try_from(v)
                    .map(SpecDuration::from_secs)
                    .map_err(|_| E::custom(format!("{v} is negative: expected a duration")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SpecDuration, E> {
                SpecDuration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

//! Durations in resources ("30s", "5m", "1h 30m"), read as humantime reads them and bounded:
//! nothing here is meant to last beyond [`MAX`], and an unbounded one (`10000000000d`)
//! would overflow the clock arithmetic of whoever schedules by it. Used through
//! `#[serde(with = "crate::duration")]` (and `crate::duration::option`); the error is raised
//! while the value is read, so it is positioned at the value.

use serde::de::{Error, Visitor};
use serde::{Deserializer, Serializer};
use std::time::Duration;

/// The longest duration a resource may give: 365 days.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Reads humantime text into a duration of at most [`MAX`].
struct Bounded;

impl Visitor<'_> for Bounded {
    type Value = Duration;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration such as `30s`, `5m` or `1h 30m`")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Duration, E> {
        let d = humantime::parse_duration(v)
            .map_err(|e| E::custom(format!("invalid duration `{v}`: {e}")))?;
        if d > MAX {
            return Err(E::custom(format!(
                "`{v}` is longer than the longest duration accepted (365 days)"
            )));
        }
        Ok(d)
    }
}

/// Writes a duration as humantime text.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    humantime_serde::serialize(d, s)
}

/// Reads a duration of at most [`MAX`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(Bounded)
}

/// The same for optional fields.
pub mod option {
    use super::Bounded;
    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    struct Maybe;

    impl<'de> Visitor<'de> for Maybe {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration such as `30s`, `5m` or `1h 30m`, or nothing")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Bounded).map(Some)
        }
    }

    /// Writes an optional duration as humantime text.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        humantime_serde::option::serialize(d, s)
    }

    /// Reads an optional duration of at most [`super::MAX`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(Maybe)
    }
}

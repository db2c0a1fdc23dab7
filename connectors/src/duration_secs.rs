//! Durations in configuration files, written as whole seconds
//! (`clock_skew = 60`), which is what operators expect to type.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Deserializes a [`Duration`] from a non-negative integer number of seconds.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_secs)
}

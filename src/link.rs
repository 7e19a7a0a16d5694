//! Link profiles: the bandwidth and one-way latency of every directed link of a session,
//! as the options, bench configs and links files name them. Upper layers (runtime, bench,
//! cli) choose a profile here; the transports' emulator (`transport::emulator`) applies it.
//! Depends on error (and serde, toml).
//!
//! Profiles (`bench-configs/links.toml` documents the sources): `local` unshaped, `lan`
//! 10 Gbit/s with 0.1 ms one-way latency, `wan` 400 Mbit/s with 20 ms one-way latency.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bandwidth and one-way latency of every directed link of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkProfile {
    pub name: String,
    /// Bandwidth of one directed link in Mbit/s (10^6 bits per second); None = unshaped.
    pub bandwidth_mbps: Option<f64>,
    /// One-way latency in milliseconds.
    #[serde(default)]
    pub latency_ms: f64,
}

/// The profiles built into the binary; `bench-configs/links.toml` holds the same values
/// with their sources (a test checks that the two agree).
const BUILTIN: [(&str, Option<f64>, f64); 3] = [
    ("local", None, 0.0),
    ("lan", Some(10_000.0), 0.1),
    ("wan", Some(400.0), 20.0),
];

/// Cap on a links file (bench-configs/links.toml is under 2 KiB).
const MAX_LINKS_FILE_BYTES: u64 = 1 << 20;

/// Slowest link accepted, in Mbit/s (1 kbit/s): slower, a 64 MiB message would take
/// longer than the emulator's 584-year clock, and nothing real is that slow.
pub const MIN_BANDWIDTH_MBPS: f64 = 1e-3;
/// Fastest link accepted, in Mbit/s (1 Pbit/s).
pub const MAX_BANDWIDTH_MBPS: f64 = 1e9;
/// Longest one-way latency accepted, in ms (1000 s).
pub const MAX_LATENCY_MS: f64 = 1e6;

fn check_bandwidth(what: &str, bw: f64) -> Result<()> {
    if !(bw.is_finite() && (MIN_BANDWIDTH_MBPS..=MAX_BANDWIDTH_MBPS).contains(&bw)) {
        return Err(Error::Config(format!(
            "{what} must be a number of Mbit/s in {MIN_BANDWIDTH_MBPS:e}..={MAX_BANDWIDTH_MBPS:e}, got {}",
            crate::error::number(bw)
        )));
    }
    Ok(())
}

fn check_latency(what: &str, ms: f64) -> Result<()> {
    if !(ms.is_finite() && (0.0..=MAX_LATENCY_MS).contains(&ms)) {
        return Err(Error::Config(format!(
            "{what} must be a number of ms in 0..={MAX_LATENCY_MS:e}, got {}",
            crate::error::number(ms)
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinksFile {
    profile: Vec<LinkProfile>,
}

impl LinkProfile {
    /// No shaping at all: messages are delivered as soon as they arrive.
    pub fn unshaped() -> Self {
        LinkProfile {
            name: "local".into(),
            bandwidth_mbps: None,
            latency_ms: 0.0,
        }
    }

    /// A built-in profile: `local`, `lan` or `wan`.
    pub fn named(name: &str) -> Result<Self> {
        BUILTIN
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|&(n, bw, lat)| LinkProfile {
                name: n.into(),
                bandwidth_mbps: bw,
                latency_ms: lat,
            })
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown link profile '{name}' (built in: local, lan, wan)"
                ))
            })
    }

    /// Every built-in profile, in order local, lan, wan.
    pub fn builtin() -> Vec<Self> {
        BUILTIN
            .iter()
            .map(|(n, _, _)| Self::named(n).unwrap())
            .collect()
    }

    /// Every profile of a links file (`[[profile]]` tables with name, bandwidth_mbps,
    /// latency_ms; a missing bandwidth means unshaped).
    pub fn load_all(path: &Path) -> Result<Vec<Self>> {
        let text = crate::error::read_capped(path, MAX_LINKS_FILE_BYTES, "links file")?;
        let file: LinksFile =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        for p in &file.profile {
            p.check()?;
        }
        Ok(file.profile)
    }

    /// The profile `name` of a links file.
    pub fn load(path: &Path, name: &str) -> Result<Self> {
        Self::load_all(path)?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::Config(format!("no link profile '{name}' in {}", path.display())))
    }

    /// A profile from command-line values; `None` bandwidth and zero latency is unshaped.
    pub fn custom(bandwidth_mbps: Option<f64>, latency_ms: f64) -> Result<Self> {
        let p = LinkProfile {
            name: "custom".into(),
            bandwidth_mbps,
            latency_ms,
        };
        p.check()?;
        Ok(p)
    }

    /// The profile chosen by command-line options: `name` from `file` (or the built-ins),
    /// then `bandwidth_mbps` / `latency_ms` override its values when given.
    pub fn from_options(
        name: Option<&str>,
        file: Option<&Path>,
        bandwidth_mbps: Option<f64>,
        latency_ms: Option<f64>,
    ) -> Result<Self> {
        // Name the option the user gave, before the profile's own check.
        if let Some(bw) = bandwidth_mbps {
            check_bandwidth("--bandwidth-mbps", bw)?;
        }
        if let Some(l) = latency_ms {
            check_latency("--latency-ms", l)?;
        }
        let mut p = match (name, file) {
            (Some(n), Some(f)) => Self::load(f, n)?,
            (Some(n), None) => Self::named(n)?,
            (None, _) => Self::unshaped(),
        };
        if bandwidth_mbps.is_some() || latency_ms.is_some() {
            if name.is_none() {
                p.name = "custom".into();
            }
            if bandwidth_mbps.is_some() {
                p.bandwidth_mbps = bandwidth_mbps;
            }
            if let Some(l) = latency_ms {
                p.latency_ms = l;
            }
        }
        p.check()?;
        Ok(p)
    }

    /// Every value within what the emulator's nanosecond arithmetic represents exactly.
    pub fn check(&self) -> Result<()> {
        let what = |field: &str| format!("link profile '{}': {field}", self.name);
        if let Some(bw) = self.bandwidth_mbps {
            check_bandwidth(&what("bandwidth_mbps"), bw)?;
        }
        check_latency(&what("latency_ms"), self.latency_ms)
    }

    /// True when the profile changes nothing (no bandwidth cap, no latency).
    pub fn is_unshaped(&self) -> bool {
        self.bandwidth_mbps.is_none() && self.latency_ms == 0.0
    }

    /// Serialisation time of `bytes` on this link, in nanoseconds.
    pub fn transmit_ns(&self, bytes: u64) -> u64 {
        match self.bandwidth_mbps {
            // bits / (Mbit/s) = microseconds; * 1e3 for ns.
            Some(bw) => ((bytes as f64 * 8.0) / bw * 1e3).round() as u64,
            None => 0,
        }
    }

    pub fn latency_ns(&self) -> u64 {
        (self.latency_ms * 1e6).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_have_the_documented_values() {
        let lan = LinkProfile::named("lan").unwrap();
        assert_eq!(lan.bandwidth_mbps, Some(10_000.0));
        assert_eq!(lan.latency_ms, 0.1);
        let wan = LinkProfile::named("wan").unwrap();
        assert_eq!(wan.bandwidth_mbps, Some(400.0));
        assert_eq!(wan.latency_ms, 20.0);
        assert!(LinkProfile::named("local").unwrap().is_unshaped());
        assert!(LinkProfile::named("moon").is_err());
    }

    #[test]
    fn transmit_time_is_bits_over_bandwidth() {
        // 1 MB at 400 Mbit/s = 8e6 bits / 4e8 bit/s = 20 ms.
        let wan = LinkProfile::named("wan").unwrap();
        assert_eq!(wan.transmit_ns(1_000_000), 20_000_000);
        assert_eq!(wan.latency_ns(), 20_000_000);
    }
}

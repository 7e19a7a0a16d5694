//! How the online phase obtains correlated randomness: by operation key, never by order,
//! so every schedule (serial, chunked, multi-batch) finds its own material. Depends on
//! offline::plan and error.

use std::collections::HashMap;
use std::sync::Mutex;

use super::plan::{Plan, Request};
use crate::error::{Error, Result};

/// Components of one request's material (e.g. [a, b, c] of a triple), flat words.
pub type Material = Vec<Vec<u64>>;

/// Source of correlated randomness for the online phase.
pub trait MaterialSource: Send + Sync {
    /// The material for operation `key`, which must have been planned as `req`.
    fn take(&self, key: u64, req: &Request) -> Result<Material>;
}

/// Expanded material of one party, consumed once per key.
pub struct MaterialStore {
    items: Mutex<HashMap<u64, (Request, Material)>>,
}

impl MaterialStore {
    pub fn new(items: HashMap<u64, (Request, Material)>) -> Self {
        MaterialStore {
            items: Mutex::new(items),
        }
    }

    /// Requests not consumed yet (a complete run leaves none).
    pub fn remaining(&self) -> usize {
        self.items.lock().unwrap().len()
    }
}

impl MaterialSource for MaterialStore {
    fn take(&self, key: u64, req: &Request) -> Result<Material> {
        let item = self.items.lock().unwrap().remove(&key);
        match item {
            Some((planned, m)) if planned == *req => Ok(m),
            Some((planned, _)) => Err(Error::Material(format!(
                "operation {key:#018x} asks for {req:?} but the material was planned as {planned:?}: the material was made for a different program"
            ))),
            None => Err(Error::Material(format!(
                "no material for operation {key:#018x} ({req:?}): it was never planned or was already used; the material does not match this program"
            ))),
        }
    }
}

/// Dry-run source: records every request and hands out zeros of the right size.
#[derive(Default)]
pub struct RecordingSource {
    entries: Mutex<Vec<(u64, Request)>>,
}

impl RecordingSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// The recorded plan (canonical order).
    pub fn into_plan(self) -> Result<Plan> {
        let plan = Plan::from_entries(self.entries.into_inner().unwrap());
        if let Some(w) = plan.entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::Protocol(format!(
                "operation key {:#018x} was used twice in one program",
                w[0].0
            )));
        }
        Ok(plan)
    }
}

impl MaterialSource for RecordingSource {
    fn take(&self, key: u64, req: &Request) -> Result<Material> {
        self.entries.lock().unwrap().push((key, req.clone()));
        Ok(req
            .component_lens()
            .into_iter()
            .map(|l| vec![0; l])
            .collect())
    }
}

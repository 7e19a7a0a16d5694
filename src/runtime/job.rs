//! A job: a named program every party runs, with its plaintext reference. The CLI's `run`,
//! `party` and `offline` subcommands and the bench harness all build jobs here, so a job
//! runs the same in-process, across processes, and from offline files.
//! Depends on proto, ring (and model, once built).

use crate::error::{Error, Result};
use crate::proto::Ctx;
use crate::ring::PlainTensor;

/// What to run (all parties must agree on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    pub model: String,
    pub parties: usize,
    pub batch: usize,
}

/// The program of a job and its plaintext reference output.
pub struct Job {
    pub spec: JobSpec,
    /// Runs at every party; returns the decoded output revealed to all parties.
    pub program: Box<dyn Fn(&Ctx) -> Result<PlainTensor> + Send + Sync>,
    /// The same computation in plaintext f64.
    pub reference: PlainTensor,
}

/// Build the job for `spec`. "selftest" is a small fixed program (input sharing, mul,
/// matmul, reveal) used by transport tests; models are added by the model layer.
pub fn build(spec: &JobSpec) -> Result<Job> {
    match spec.model.as_str() {
        "selftest" => Ok(selftest(spec)),
        other => Err(Error::Config(format!("unknown model '{other}'"))),
    }
}

fn selftest(spec: &JobSpec) -> Job {
    let b = spec.batch.max(1);
    let x = PlainTensor::from_vec(
        &[b, 4],
        (0..4 * b).map(|i| (i as f64) * 0.25 - 1.0).collect(),
    );
    let w = PlainTensor::from_vec(&[4, 3], (0..12).map(|i| 0.5 - (i as f64) * 0.125).collect());
    let reference = x.mul(&x).matmul(&w);
    let (xs, ws) = (x.clone(), w.clone());
    let program = move |ctx: &Ctx| -> Result<PlainTensor> {
        let last = ctx.parties() - 1;
        let xv = ctx.share_plain(0, Some(&xs), xs.shape())?;
        let wv = ctx.share_plain(last, Some(&ws), ws.shape())?;
        let sq = ctx.mul(&xv, &xv)?;
        let y = ctx.matmul(&sq, &wv)?;
        ctx.reveal_plain(&y)
    };
    Job {
        spec: spec.clone(),
        program: Box::new(program),
        reference,
    }
}

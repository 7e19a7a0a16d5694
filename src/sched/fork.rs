//! Running lanes: `fork_join` runs work on the calling lane and on new lanes (threads of
//! `sched::pool` or coroutines of this party's thread) and waits for all of them. Depends
//! on lanes, sched::pool and error.

use super::Lanes;
use crate::error::{Error, Result};
use crate::lanes;

/// A lane's work, to run on another thread or as a coroutine.
pub type LaneFn<'a, T> = Box<dyn FnOnce() -> T + Send + 'a>;

fn lane_panicked() -> Error {
    Error::Protocol("a pipeline lane panicked".into())
}

/// Run `first` on the calling thread and each of `rest` as a lane, and wait for them all;
/// a lane that panicked is an error. `mode` says whether the lanes are OS threads or
/// coroutines on this thread. Lanes are named after their parent lane (timelines show a
/// row per lane).
pub fn fork_join<'a, A, B: Send + 'a>(
    mode: Lanes,
    first: impl FnOnce() -> A,
    rest: Vec<(String, LaneFn<'a, B>)>,
) -> (A, Vec<Result<B>>) {
    let parent = lanes::current_name();
    let named = rest
        .into_iter()
        .map(|(name, f)| (format!("{parent} / {name}"), f));
    match mode {
        Lanes::Threads => {
            let (a, bs) = super::pool::fork_join(first, named.collect());
            (
                a,
                bs.into_iter()
                    .map(|b| b.map_err(|_| lane_panicked()))
                    .collect(),
            )
        }
        Lanes::Coroutines => lanes::scope(|sc| {
            let hs: Vec<_> = named.map(|(name, f)| sc.spawn(name, f)).collect();
            let a = first();
            let bs = hs
                .into_iter()
                .map(|h| h.join().map_err(|_| lane_panicked()));
            (a, bs.collect())
        }),
    }
}

/// Run `f` on each part (the first on the calling lane, the others as lanes), returning
/// each part's output and the operation index its context reached, in part order.
pub fn parts<'a, P: Send + 'a, T: Send + 'a>(
    mode: Lanes,
    label: &str,
    parts: Vec<P>,
    f: &'a (dyn Fn(P) -> Result<T> + Sync),
) -> Result<Vec<T>> {
    let mut it = parts.into_iter();
    let Some(p0) = it.next() else {
        return Ok(Vec::new());
    };
    let rest: Vec<(String, LaneFn<Result<T>>)> = it
        .enumerate()
        .map(|(i, p)| {
            let lane: LaneFn<Result<T>> = Box::new(move || f(p));
            (format!("{label} {}", i + 1), lane)
        })
        .collect();
    let (y0, ys) = fork_join(mode, || f(p0), rest);
    std::iter::once(y0)
        .chain(ys.into_iter().map(|y| y.and_then(|y| y)))
        .collect()
}

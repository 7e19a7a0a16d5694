//! Lane threads that outlive their lanes: `fork_join` of `Lanes::Threads` hands each lane
//! to an idle thread of this process-wide pool (starting one when none is idle) and waits
//! for all of them, with the borrowing rules of `std::thread::scope`. Depends on lanes.
//!
//! Why not a fresh OS thread per lane: training starts lanes per step (micro-batches, the
//! weights lane) and per non-linear layer call (inner-layer chunks), hundreds per epoch,
//! and a fresh thread starts with nothing of its own: no allocator pages (mimalloc's heaps
//! are per thread), no GEMM packing buffers (`kernels::driver`'s thread-locals), an
//! untouched stack. Each one faulted its working set in afresh: digits-cnn training under
//! inter-batch (batch 128, 4 micro-batches) spent 8% of its party threads' samples zeroing
//! fresh pages (`clear_page_erms`, against none under serial) and about 1.5x serial's CPU
//! per sample. A reused thread keeps its pages warm. Idle threads wait on a channel and
//! cost nothing but their memory; at most `MAX_IDLE` are kept.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Condvar, Mutex};

/// A lane's work with its lifetime erased (see `fork_join`'s safety argument).
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Idle threads, each the sender of its job channel; the most recently idle last.
static IDLE: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());

/// Idle threads kept beyond this exit (more than any schedule of this machine's sessions
/// runs at once: 2 parties x (micro-batches x chunks + a weights lane)).
const MAX_IDLE: usize = 64;

/// Run `job` on an idle pool thread, or on a new one. If no thread can be started, the
/// job is dropped unrun (its `Finish` reports that).
fn dispatch(mut job: Job) {
    loop {
        // Popped under the lock and sent outside it: a thread is in `IDLE` only while it
        // waits on its channel, so a send reaches a waiting thread.
        let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                // Unreachable (a listed thread holds its receiver), but harmless: try the
                // next one.
                Err(mpsc::SendError(j)) => job = j,
            },
            None => {
                // On failure the closure, and with it the job, is dropped.
                let _ = std::thread::Builder::new()
                    .name("lane".into())
                    .spawn(move || worker(job));
                return;
            }
        }
    }
}

/// A pool thread: run a job, go idle, wait for the next.
fn worker(first: Job) {
    let (tx, rx) = mpsc::channel::<Job>();
    let mut job = first;
    loop {
        job();
        {
            let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(tx.clone());
        }
        match rx.recv() {
            Ok(j) => job = j,
            Err(_) => return,
        }
    }
}

/// What the lanes of one `fork_join` hand back: how many are still running, and each
/// one's result (Err: its panic).
struct Join<B> {
    state: Mutex<(usize, Vec<Option<std::thread::Result<B>>>)>,
    done: Condvar,
}

impl<B> Join<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Vec<Option<std::thread::Result<B>>>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A lane's end, in its job: stores the lane's result (or, if the job is dropped unrun,
/// an error) and counts the lane finished when dropped, so `left` reaches 0 whatever
/// happens to the job.
struct Finish<B> {
    join: Arc<Join<B>>,
    i: usize,
    result: Option<std::thread::Result<B>>,
}

impl<B> Finish<B> {
    /// The lane's result; the lane is finished (`drop`).
    fn store(mut self, r: std::thread::Result<B>) {
        self.result = Some(r);
    }
}

impl<B> Drop for Finish<B> {
    fn drop(&mut self) {
        let r = self.result.take().unwrap_or_else(|| {
            Err(Box::new("cannot start a pipeline lane thread") as Box<dyn std::any::Any + Send>)
        });
        let mut g = self.join.lock();
        g.1[self.i] = Some(r);
        g.0 -= 1;
        drop(g);
        self.join.done.notify_all();
    }
}

/// Waits, when dropped (also while unwinding), until every lane has finished, then drops
/// whatever results were not taken: nothing a lane borrowed is touched after `fork_join`
/// returns.
struct WaitAll<'j, B>(&'j Join<B>);

impl<B> Drop for WaitAll<'_, B> {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        while g.0 > 0 {
            g = self.0.done.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.1.clear();
    }
}

/// Run `first` on the calling thread and each of `rest` (name, work) on a pool thread, and
/// wait for them all. Returns `first`'s output and each lane's result in order (Err: the
/// lane panicked).
pub fn fork_join<'a, A, B: Send + 'a>(
    first: impl FnOnce() -> A,
    rest: Vec<(String, Box<dyn FnOnce() -> B + Send + 'a>)>,
) -> (A, Vec<std::thread::Result<B>>) {
    let n = rest.len();
    let join = Arc::new(Join {
        state: Mutex::new((n, (0..n).map(|_| None).collect())),
        done: Condvar::new(),
    });
    let wait = WaitAll(&join);
    for (i, (name, f)) in rest.into_iter().enumerate() {
        let fin = Finish {
            join: join.clone(),
            i,
            result: None,
        };
        let job: Box<dyn FnOnce() + Send + 'a> = Box::new(move || {
            crate::lanes::set_thread_lane(Some(name));
            let r = catch_unwind(AssertUnwindSafe(f));
            crate::lanes::set_thread_lane(None);
            fin.store(r);
        });
        // SAFETY: the job borrows only what outlives 'a (`f`, and `Finish`'s result type),
        // and this function does not return or unwind past `wait` before every job's
        // `Finish` has stored its result. A job that runs has consumed `f` inside
        // `catch_unwind` by then, and its `Finish` is the last thing it drops; a job that
        // cannot be started is dropped whole on this thread, inside `dispatch`. `wait` also
        // drops every result not taken, so no `B` outlives 'a in the `Join` a pool thread
        // may release last.
        let job: Job = unsafe {
            std::mem::transmute::<Box<dyn FnOnce() + Send + 'a>, Box<dyn FnOnce() + Send + 'static>>(
                job,
            )
        };
        dispatch(job);
    }
    let a = first();
    let mut g = {
        let mut g = join.lock();
        while g.0 > 0 {
            g = join.done.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g
    };
    let outs =
        g.1.iter_mut()
            .map(|r| r.take().expect("every lane stored its result"))
            .collect();
    drop(g);
    drop(wait);
    (a, outs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Lane<'a, T> = (String, Box<dyn FnOnce() -> T + Send + 'a>);

    #[test]
    fn lanes_run_concurrently_borrow_the_callers_data_and_are_reused() {
        // Each lane waits for every other to have started: only possible if they run at
        // once, on threads of their own.
        let started = AtomicUsize::new(0);
        let data = vec![1u64, 2, 3];
        let run = |k: usize| -> (A, Vec<std::thread::Result<(u64, String)>>) {
            let lanes: Vec<Lane<(u64, String)>> = (0..k)
                .map(|i| {
                    let (started, data) = (&started, &data);
                    let f: Box<dyn FnOnce() -> (u64, String) + Send + '_> = Box::new(move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        while started.load(Ordering::SeqCst) < k {
                            std::thread::yield_now();
                        }
                        (data[i], crate::lanes::current_name())
                    });
                    (format!("lane {i}"), f)
                })
                .collect();
            fork_join(|| A(data.iter().sum()), lanes)
        };
        struct A(u64);
        let (a, outs) = run(3);
        assert_eq!(a.0, 6);
        let outs: Vec<(u64, String)> = outs.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(
            outs,
            vec![
                (1, "lane 0".to_string()),
                (2, "lane 1".to_string()),
                (3, "lane 2".to_string())
            ]
        );
        // Finished lanes' threads wait, idle, in the pool for the next lanes.
        started.store(0, Ordering::SeqCst);
        let (_, outs) = run(2);
        assert!(outs.into_iter().all(|r| r.is_ok()));
        assert!(!IDLE.lock().unwrap().is_empty());
    }

    #[test]
    fn a_panicking_lane_is_an_err_and_the_others_finish() {
        let hits = AtomicUsize::new(0);
        let h = &hits;
        let lanes: Vec<Lane<usize>> = vec![
            ("bad".into(), Box::new(|| panic!("lane failure"))),
            (
                "good".into(),
                Box::new(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    h.fetch_add(1, Ordering::SeqCst)
                }),
            ),
        ];
        let (a, outs) = fork_join(|| 7, lanes);
        assert_eq!(a, 7);
        assert!(outs[0].is_err());
        assert_eq!(*outs[1].as_ref().unwrap(), 0);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}

//! Pipeline lanes as coroutines on their party's thread: `scope` and `Scope::spawn` (shaped
//! like `std::thread::scope`), `Handle::join`, and the one way anything on a party's thread
//! blocks, `park_timeout`. Depends on nothing else in the crate (std and corosensei).
//!
//! Why coroutines rather than a thread per lane: a lane spends most of a round waiting, and
//! on a machine with fewer cores than lanes every wait as an OS thread costs a futex wake-up
//! on the sending side and a context switch on the receiving side (tens of microseconds on
//! an idle virtual CPU, once per lane per round), and the kernel may preempt a lane in the
//! middle of its round's compute to run another. As coroutines, a party's lanes take turns
//! on its one thread: a lane that waits hands the thread to the next lane that can run, in
//! nanoseconds, and the thread sleeps only when every lane waits. Heavy kernels inside a
//! lane still use the whole rayon pool.
//!
//! How waiting works. Code that blocks (the transports' `Inbox::wait`, the weight slots,
//! `join`) loops on "check; register to be woken; `park_timeout`" exactly as with threads,
//! and wake-ups from other threads are unparks of the party's thread (`Waker`, which skips
//! one when the thread wakes by itself before the thing is usable anyway). Here,
//! `park_timeout` in a lane suspends it; on the party's own code (the root, which is not a
//! lane) it drives the lanes until something may have changed for the root. The driver
//! resumes a suspended lane only when it may be able to go on: its nap is over, the OS
//! thread was unparked (some other thread delivered something), or something on this
//! thread changed (`notify`: a lane finished, a weight slot was filled). When no lane can
//! go on, the thread parks until the earliest nap ends. A spurious return from
//! `park_timeout` is always allowed, as with `std::thread::park_timeout`.
//!
//! The rule this imposes: nothing a lane waits for may be signalled only through a primitive
//! that blocks the OS thread (a `Condvar`, a channel): it must end in `notify` (same
//! thread) or an unpark (another thread).

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

/// Stack of one lane. Lanes run the same protocol code as the party's own thread, which
/// Rust gives 2 MiB; pages are only touched as used.
const LANE_STACK: usize = 2 << 20;

/// When every lane waits and the earliest nap ends within this, the driver spins instead
/// of parking the thread: an OS sleep of 20-100 µs on this project's VM ends 24-26 µs late,
/// and such short naps are lanes waiting for a message due any moment (the link
/// emulator's receivers spin their last 30 µs for the same reason; a lane hands those
/// microseconds to its siblings instead, and only the driver spins, when none can run).
const SPIN_NAP: Duration = Duration::from_micros(30);

/// A lane yields the time its nap ends.
type Co = Coroutine<(), Instant, (), DefaultStack>;

struct Task {
    name: String,
    co: Co,
    /// `Exec::gen` when the lane last suspended.
    parked_gen: u64,
    wake: Instant,
}

impl Task {
    /// Whether the lane may be able to go on: never run, something changed since it
    /// suspended, or its nap is over.
    fn runnable(&self, gen: u64, now: Instant) -> bool {
        !self.co.started() || self.parked_gen < gen || self.wake <= now
    }
}

/// One party thread's lanes.
#[derive(Default)]
struct Exec {
    /// Suspended (or not yet started) lanes; each pass sorts them by nap end.
    tasks: RefCell<Vec<Task>>,
    /// Bumped by every change a parked lane may be waiting for.
    gen: Cell<u64>,
    /// The running lane's yielder, set by the lane itself whenever it (re)starts; null on
    /// the root.
    yielder: Cell<*const Yielder<(), Instant>>,
    /// The running lane's name; None on the root.
    name: RefCell<Option<String>>,
    /// Stacks of finished lanes, reused by the next ones.
    stacks: RefCell<Vec<DefaultStack>>,
}

thread_local! {
    static EXEC: Exec = Exec::default();
    /// When this thread next wakes by itself (`stamp`), 0 while it runs.
    static PARKED_UNTIL: Arc<AtomicU64> = Arc::new(AtomicU64::new(0));
    /// The lane a reused OS thread runs (`set_thread_lane`).
    static THREAD_LANE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Times in `PARKED_UNTIL` count from here.
fn stamp(t: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    (t.saturating_duration_since(origin).as_nanos() as u64).max(1)
}

/// Park the OS thread for `nap`, publishing when it will wake by itself.
fn os_park(nap: Duration) {
    PARKED_UNTIL.with(|p| {
        p.store(stamp(Instant::now() + nap), Ordering::SeqCst);
        std::thread::park_timeout(nap);
        p.store(0, Ordering::SeqCst);
    })
}

/// Wakes the thread that made it (from any thread).
#[derive(Clone, Debug)]
pub struct Waker {
    thread: Thread,
    parked_until: Arc<AtomicU64>,
}

impl Waker {
    /// A waker for the calling thread.
    pub fn current() -> Waker {
        Waker {
            thread: std::thread::current(),
            parked_until: PARKED_UNTIL.with(Arc::clone),
        }
    }

    /// Wake the thread now.
    pub fn wake(&self) {
        self.thread.unpark();
    }

    /// Wake the thread for something it may not use before `ready`. Skipped when the
    /// thread sleeps until no later than `ready` anyway: it re-checks everything it waits
    /// for whenever it wakes, and an unpark wakes an idle CPU (the sender pays the IPI).
    /// With lanes on one thread, messages for the other lanes mostly arrive while the
    /// thread sleeps until an earlier one is due.
    ///
    /// Why no wake-up is lost: the caller publishes what it hands over before calling this
    /// (SeqCst), and the thread clears its stamp (SeqCst) when it wakes, before it
    /// re-checks. So a non-zero stamp read here belongs to a sleep whose re-check comes
    /// after the hand-over, and that sleep ends by `ready`.
    pub fn wake_for(&self, ready: Instant) {
        let until = self.parked_until.load(Ordering::SeqCst);
        if until == 0 || until > stamp(ready) {
            self.thread.unpark();
        }
    }
}

/// Something a lane on this thread may wait for has changed (a value it polls was set).
pub fn notify() {
    EXEC.with(|e| e.bump());
}

/// Whether the caller runs in a lane (so `park_timeout` hands the thread to its siblings).
pub fn in_lane() -> bool {
    EXEC.with(|e| !e.yielder.get().is_null())
}

/// The running lane's name: a coroutine lane's, else the one `set_thread_lane` gave this
/// thread, else the thread's own name (the party's own code).
pub fn current_name() -> String {
    EXEC.with(|e| e.name.borrow().clone())
        .or_else(|| THREAD_LANE.with(|n| n.borrow().clone()))
        .unwrap_or_else(|| std::thread::current().name().unwrap_or("lane").to_string())
}

/// Name the lane this OS thread runs from now on (None: back to the thread's own name).
/// Lane threads are reused from lane to lane (`sched::pool`), so their OS names are stale.
pub fn set_thread_lane(name: Option<String>) {
    THREAD_LANE.with(|n| *n.borrow_mut() = name);
}

/// Block the caller for at most `nap`, or less (callers re-check what they wait for). In a
/// lane: suspend it; on the root with lanes alive: run them meanwhile; otherwise a plain
/// `std::thread::park_timeout`.
pub fn park_timeout(nap: Duration) {
    EXEC.with(|e| {
        let y = e.yielder.get();
        if !y.is_null() {
            // SAFETY: `y` is the running lane's own yielder, which it set when it (re)started
            // on this thread; the lane is running, so it is alive.
            unsafe { (*y).suspend(Instant::now() + nap) };
            // Resumed: the driver cleared the slot while other lanes ran.
            e.yielder.set(y);
        } else if e.tasks.borrow().is_empty() {
            os_park(nap);
        } else {
            e.drive(Instant::now() + nap);
        }
    })
}

impl Exec {
    fn bump(&self) {
        self.gen.set(self.gen.get() + 1);
    }

    /// Run lanes on the root until something changed or `deadline`.
    fn drive(&self, deadline: Instant) {
        let g0 = self.gen.get();
        loop {
            self.pass();
            let now = Instant::now();
            if self.gen.get() != g0 || now >= deadline {
                return;
            }
            let until = (self.tasks.borrow().iter())
                .map(|t| t.wake)
                .fold(deadline, Instant::min);
            if until > now && until - now <= SPIN_NAP {
                // Spun, not slept: see SPIN_NAP. Bounded by `until`.
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            } else if until > now {
                os_park(until - now);
            }
            // An unpark or a nap's end: every parked lane re-checks.
            self.bump();
        }
    }

    /// Resume, once each, every lane that may be able to go on.
    fn pass(&self) {
        let now = Instant::now();
        // Earliest nap end first: the lane that has been able to go on the longest runs
        // first, so the lanes' round-trip chains stay evenly spaced instead of the last
        // lane in spawn order always waiting behind the others (LeNet on lan, `all` with
        // 4 micro-batches: η 0.74-0.78 against 0.70-0.74 in spawn order).
        self.tasks
            .borrow_mut()
            .sort_by_key(|t| (t.co.started(), t.wake));
        let mut i = 0;
        loop {
            let mut task = {
                let mut ts = self.tasks.borrow_mut();
                let gen = self.gen.get();
                match (i..ts.len()).find(|&j| ts[j].runnable(gen, now)) {
                    Some(j) => {
                        i = j;
                        ts.remove(j)
                    }
                    None => return,
                }
            };
            // Only the root drives, so no lane is running and the name slot is empty.
            self.name.replace(Some(std::mem::take(&mut task.name)));
            let r = task.co.resume(());
            task.name = self.name.take().unwrap_or_default();
            self.yielder.set(std::ptr::null());
            match r {
                CoroutineResult::Yield(wake) => {
                    task.wake = wake;
                    task.parked_gen = self.gen.get();
                    self.tasks.borrow_mut().insert(i, task);
                    i += 1;
                }
                CoroutineResult::Return(()) => {
                    self.stacks.borrow_mut().push(task.co.into_stack());
                    self.bump();
                }
            }
        }
    }
}

/// Lanes spawned by one `scope` call; all are finished when `scope` returns.
pub struct Scope<'scope, 'env: 'scope> {
    done: RefCell<Vec<Rc<Cell<bool>>>>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// A lane's result, once it has finished.
pub struct Handle<'scope, T> {
    slot: Rc<RefCell<Option<std::thread::Result<T>>>>,
    _scope: PhantomData<&'scope ()>,
}

/// Run `f`, which may spawn lanes borrowing from the caller; returns once every lane it
/// spawned has finished (also when `f` panics), as `std::thread::scope` does.
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let s = Scope {
        done: RefCell::new(Vec::new()),
        _scope: PhantomData,
        _env: PhantomData,
    };
    struct Wait<'a, 's, 'e>(&'a Scope<'s, 'e>);
    impl Drop for Wait<'_, '_, '_> {
        fn drop(&mut self) {
            while !self.0.done.borrow().iter().all(|d| d.get()) {
                park_timeout(Duration::from_secs(1));
            }
        }
    }
    let wait = Wait(&s);
    let out = f(&s);
    drop(wait);
    out
}

impl<'scope> Scope<'scope, '_> {
    /// Start `f` as a lane named `name` on this thread. It first runs when the spawning
    /// code next blocks.
    pub fn spawn<F, T>(&'scope self, name: String, f: F) -> Handle<'scope, T>
    where
        F: FnOnce() -> T + 'scope,
        T: 'scope,
    {
        let slot: Rc<RefCell<Option<std::thread::Result<T>>>> = Rc::new(RefCell::new(None));
        let done = Rc::new(Cell::new(false));
        let (s, d) = (slot.clone(), done.clone());
        let body = move |yi: &Yielder<(), Instant>, ()| {
            EXEC.with(|e| e.yielder.set(yi as *const _));
            *s.borrow_mut() = Some(catch_unwind(AssertUnwindSafe(f)));
            d.set(true);
        };
        let stack = EXEC.with(|e| e.stacks.borrow_mut().pop());
        let stack = match stack {
            Some(st) => st,
            None => DefaultStack::new(LANE_STACK).expect("cannot map a pipeline lane's stack"),
        };
        // SAFETY: the lane borrows only what outlives 'scope, and `scope` does not return
        // (nor unwind past its frame) before every lane spawned in it has finished: its
        // `Wait` guard drives them to the end.
        let co: Co = unsafe { Coroutine::with_stack_unchecked(stack, body) };
        self.done.borrow_mut().push(done);
        EXEC.with(|e| {
            e.tasks.borrow_mut().push(Task {
                name,
                co,
                parked_gen: 0,
                wake: Instant::now(),
            })
        });
        Handle {
            slot,
            _scope: PhantomData,
        }
    }
}

impl<T> Handle<'_, T> {
    /// Wait for the lane to finish; Err carries its panic.
    pub fn join(self) -> std::thread::Result<T> {
        loop {
            if let Some(r) = self.slot.borrow_mut().take() {
                return r;
            }
            park_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn lanes_interleave_at_their_waits_and_join_in_order() {
        // Two lanes that each wait for the other's step: only possible if a lane's wait
        // hands the thread to the other lane.
        let step = Cell::new(0usize);
        let log = RefCell::new(Vec::new());
        let wait_for = |n: usize| {
            while step.get() < n {
                park_timeout(Duration::from_secs(5));
            }
        };
        let out = scope(|s| {
            let a = s.spawn("a".into(), || {
                for i in 0..3 {
                    wait_for(2 * i);
                    log.borrow_mut().push(format!("a{i} {}", current_name()));
                    step.set(step.get() + 1);
                    notify();
                }
                1
            });
            let b = s.spawn("b".into(), || {
                for i in 0..3 {
                    wait_for(2 * i + 1);
                    log.borrow_mut().push(format!("b{i} {}", current_name()));
                    step.set(step.get() + 1);
                    notify();
                }
                2
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(out, (1, 2));
        let want: Vec<String> = (0..3)
            .flat_map(|i| [format!("a{i} a"), format!("b{i} b")])
            .collect();
        assert_eq!(*log.borrow(), want);
    }

    #[test]
    fn an_unpark_from_another_thread_wakes_a_lane() {
        let flag = Arc::new(AtomicUsize::new(0));
        let me = std::thread::current();
        let f2 = flag.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            f2.store(1, Ordering::SeqCst);
            me.unpark();
        });
        let start = Instant::now();
        scope(|s| {
            let h = s.spawn("waiter".into(), || {
                while flag.load(Ordering::SeqCst) == 0 {
                    park_timeout(Duration::from_secs(10));
                }
            });
            h.join().unwrap();
        });
        t.join().unwrap();
        // Woken by the unpark, not by the 10 s nap.
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_panicking_lane_is_an_error_at_join_and_nested_scopes_finish() {
        let total = Cell::new(0);
        let r = scope(|s| {
            let bad = s.spawn("bad".into(), || -> u32 { panic!("lane failure") });
            let good = s.spawn("good".into(), || {
                scope(|s2| {
                    let hs: Vec<_> = (1..=3)
                        .map(|i| {
                            let total = &total;
                            s2.spawn(format!("inner {i}"), move || {
                                park_timeout(Duration::from_millis(1));
                                total.set(total.get() + i);
                            })
                        })
                        .collect();
                    hs.into_iter().for_each(|h| h.join().unwrap());
                });
                7
            });
            (bad.join().is_err(), good.join().unwrap())
        });
        assert_eq!(r, (true, 7));
        assert_eq!(total.get(), 6);
    }

    #[test]
    fn a_nap_ends_without_a_wake_up() {
        let start = Instant::now();
        scope(|s| {
            s.spawn("sleeper".into(), || {
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_millis(30) {
                    park_timeout(Duration::from_millis(30).saturating_sub(t0.elapsed()));
                }
            })
            .join()
            .unwrap();
        });
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30) && took < Duration::from_secs(5));
    }

    #[test]
    fn a_wake_for_something_due_after_the_sleep_ends_does_not_cut_it_short() {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(Waker::current()).unwrap();
            let t0 = Instant::now();
            park_timeout(Duration::from_millis(400));
            t0.elapsed()
        });
        let w = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // Due after the sleeper wakes by itself: no unpark.
        w.wake_for(Instant::now() + Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !t.is_finished(),
            "woken for a message due after its own wake-up"
        );
        // Due now: woken at once, well before its 400 ms nap ends.
        w.wake_for(Instant::now());
        let slept = t.join().unwrap();
        assert!(slept >= Duration::from_millis(140) && slept < Duration::from_millis(390));
    }
}

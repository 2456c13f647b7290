//! openraft's `AsyncRuntime` for ordo: tokio, as openraft's own
//! `TokioRuntime`, with two seams for the deterministic simulator
//! (`sim/`, docs/ARCHITECTURE.md, "The cluster simulator"):
//!
//! - **Randomness.** openraft draws its election timeouts from
//!   [`AsyncRuntime::thread_rng`]. Here that is the OS-seeded thread RNG,
//!   as before, unless the thread was given a seed ([`seed_thread_rng`],
//!   simulator only): then a seeded generator, so that a seed's elections
//!   happen at the same simulated instants every run.
//! - **Spawning.** Every task openraft (and ordo's Raft code) spawns goes
//!   through [`spawn`]. In a simulator build, a task spawned while a
//!   member's [`MemberTasks`] scope is set joins that member's set, and
//!   so does every task it spawns: killing the member aborts them all at
//!   once, as a process death would, and none of them runs again. Outside
//!   a scope (always, in production) it is `tokio::spawn`.
//!
//! Time is tokio's (`tokio::time::Instant`, sleeps and timeouts), so a
//! current-thread runtime on paused time drives it from simulated time.

use std::future::Future;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioInstant};

/// ordo's openraft runtime (see the module's docs).
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct OrdoRuntime;

/// openraft's `oneshot` sender over tokio's.
pub struct OneshotSender<T: OptionalSend>(tokio::sync::oneshot::Sender<T>);

impl<T: OptionalSend> std::fmt::Debug for OneshotSender<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("OneshotSender")
    }
}

impl<T: OptionalSend> openraft::async_runtime::AsyncOneshotSendExt<T> for OneshotSender<T> {
    fn send(self, value: T) -> Result<(), T> {
        self.0.send(value)
    }
}

std::thread_local! {
    /// The seeded generator of a simulator thread.
    static SEEDED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Makes openraft's randomness on this thread come from `seed` (a
/// SplitMix64 stream), or again from the OS with `None`.
#[cfg(feature = "sim")]
pub fn seed_thread_rng(seed: Option<u64>) {
    SEEDED.with(|cell| cell.set(seed));
}

/// openraft's random numbers: the thread's seeded stream if it has one,
/// else `rand::thread_rng()`.
#[derive(Debug, Default, Clone, Copy)]
pub struct OrdoRng;

impl rand::RngCore for OrdoRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        let seeded = SEEDED.with(|cell| {
            cell.get().map(|state| {
                let state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                cell.set(Some(state));
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            })
        });
        seeded.unwrap_or_else(|| rand::thread_rng().next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[cfg(feature = "sim")]
mod member {
    use std::sync::Arc;

    use parking_lot::Mutex;

    /// The tasks of one incarnation of a simulated member.
    #[derive(Clone, Default)]
    pub struct MemberTasks {
        tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
        /// What its tasks panicked with (tokio keeps a task's panic in
        /// its join handle, which openraft does not always look at).
        panics: Arc<Mutex<Vec<String>>>,
    }

    /// Polls the task's future, noting a panic in the member's list
    /// before letting it unwind on into tokio.
    pub(super) struct NotePanics<F> {
        pub(super) future: std::pin::Pin<Box<F>>,
        pub(super) panics: Arc<Mutex<Vec<String>>>,
    }

    impl<F: std::future::Future> std::future::Future for NotePanics<F> {
        type Output = F::Output;

        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            context: &mut std::task::Context<'_>,
        ) -> std::task::Poll<F::Output> {
            let future = self.future.as_mut();
            let polled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.poll(context)));
            match polled {
                Ok(poll) => poll,
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|text| text.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".into());
                    self.panics.lock().push(message);
                    std::panic::resume_unwind(payload)
                }
            }
        }
    }

    tokio::task_local! {
        pub(super) static MEMBER: MemberTasks;
    }

    impl MemberTasks {
        pub fn new() -> MemberTasks {
            MemberTasks::default()
        }

        /// What the member's tasks panicked with so far.
        pub fn panics(&self) -> Vec<String> {
            self.panics.lock().clone()
        }

        pub(super) fn noting_panics<F>(&self, future: F) -> NotePanics<F> {
            NotePanics {
                future: Box::pin(future),
                panics: self.panics.clone(),
            }
        }

        pub(super) fn register(&self, handle: tokio::task::AbortHandle) {
            let mut tasks = self.tasks.lock();
            tasks.retain(|task| !task.is_finished());
            tasks.push(handle);
        }

        /// Runs `future` (and every task it spawns, and they spawn) as
        /// this member's.
        pub async fn scope<F: std::future::Future>(&self, future: F) -> F::Output {
            MEMBER.scope(self.clone(), future).await
        }

        /// Runs `work` as this member's (what it spawns is the member's).
        pub fn sync_scope<R>(&self, work: impl FnOnce() -> R) -> R {
            MEMBER.sync_scope(self.clone(), work)
        }

        /// Aborts every task of the member: none of them is polled again.
        pub fn kill(&self) {
            for task in self.tasks.lock().drain(..) {
                task.abort();
            }
        }
    }
}

#[cfg(feature = "sim")]
pub use member::MemberTasks;

/// Spawns `future` on the current runtime; in a simulator build, as a
/// task of the current member scope, if any.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(feature = "sim")]
    if let Ok(tasks) = member::MEMBER.try_with(Clone::clone) {
        let future = tasks.noting_panics(future);
        let handle = tokio::spawn(member::MEMBER.scope(tasks.clone(), future));
        tasks.register(handle.abort_handle());
        return handle;
    }
    tokio::spawn(future)
}

/// [`spawn`] on the runtime of `runtime` (from outside it too).
pub fn spawn_on<F>(
    runtime: &tokio::runtime::Handle,
    future: F,
) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(feature = "sim")]
    if let Ok(tasks) = member::MEMBER.try_with(Clone::clone) {
        let future = tasks.noting_panics(future);
        let handle = runtime.spawn(member::MEMBER.scope(tasks.clone(), future));
        tasks.register(handle.abort_handle());
        return handle;
    }
    runtime.spawn(future)
}

/// Runs `work`, which may block the thread (a full channel, a file
/// write): with `block_in_place` on a multi-thread runtime, so the other
/// tasks move to another worker; directly anywhere else (a current-thread
/// runtime, where whatever it waits for must not need this thread).
pub fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

impl AsyncRuntime for OrdoRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = OrdoRng;
    type OneshotSender<T: OptionalSend> = OneshotSender<T>;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        OrdoRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        (OneshotSender(sender), receiver)
    }
}

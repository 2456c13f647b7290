//! The executor threads' shared view of a batch, and the walk through it.
//!
//! Thread 0 (the caller of `Executor::execute_each`) *plans* entries in
//! log order: it answers what the exactly-once table can answer, finds
//! each call's procedure and partitions, and writes a [`Cell`] per entry
//! with the task, and a mask of the slots it touches beside it. It
//! publishes its progress with one atomic counter per chunk of entries.
//!
//! Every slot has a *lane*: a cursor that walks the planned cells in log
//! order, stepping over those that do not touch its slot. A thread steps
//! the lanes of the slots it owns ([`ThreadLanes`]), the one furthest
//! behind first, any other when that one must wait:
//!
//! - a cell that touches this slot alone, the lane runs;
//! - a cell that touches several slots is a meeting: each of its slots'
//!   lanes arrives once it has done everything before the cell in its
//!   slot, and the last to arrive runs it (every slot it needs is then
//!   idle) while the others wait for it to be done. A thread whose lane
//!   waits at a meeting goes on with its other slots' lanes, so it waits
//!   only when all of them do (Calvin's per-slot lock queues).
//!
//! Results are written into the cell by whichever thread ran it, and
//! thread 0 hands them out in log order. So nothing goes from thread to
//! thread per transaction but the cell, written once and read once: no
//! queue, no message, no allocation freed on another thread. Each slot's
//! transactions run one at a time in log order, so outcomes and hashes
//! are the same for every number of threads and every timing.
//!
//! Under [`super::PartitionSchedule::Seeded`] there are no OS threads:
//! thread 0 steps threads 1 to N-1's lanes itself, in an order a seeded
//! generator picks, so a simulator can explore interleavings and replay
//! one by its seed.

use std::cell::UnsafeCell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ordo_entry::{Batch, Entry};
use parking_lot::Mutex;

use super::{
    ENGINE_THREAD_STACK_BYTES, EnginePanic, Prepared, Ran, Slot, panic_message, run_in_slots,
};
use crate::partition::{SLOTS, thread_of_slot};
use crate::sandbox::{Call, Export};

/// What a lane does with a planned entry.
pub(super) struct Task {
    pub prepared: Prepared,
    /// The ABI's code for the arguments' encoding.
    pub encoding: i32,
    /// See `Executor::inject_partition_panic`.
    #[cfg(feature = "fault-injection")]
    pub panic: bool,
}

/// Cells in the ring: entry `i` of a batch uses cell `i % RING_CELLS`.
/// Thread 0 plans at most `PLAN_AHEAD_ENTRIES` past the last entry it has
/// handed out (executor.rs checks that this is less), so a cell is reused
/// only once its previous entry is done and handed out. A ring, not a
/// cell per entry, keeps the cells (256 bytes each) hot in the cache.
pub(super) const RING_CELLS: usize = 1024;

/// One planned entry. Two cache lines to itself, so that threads working
/// on neighbouring cells do not share a line (the adjacent-line
/// prefetcher fetches lines in pairs).
#[repr(align(128))]
pub(super) struct Cell {
    /// Taken by the thread that runs the cell (the only one, or the last
    /// to arrive at a meeting).
    task: UnsafeCell<Option<Task>>,
    /// Slots' lanes arrived at the meeting.
    arrived: AtomicU32,
    /// The generation (see [`Shared::generation`]) of the last entry this
    /// cell held that is done, stored with `Release` once `ran` is
    /// written. Never lowered: a lane still waiting at a meeting when its
    /// cell is reused sees a later generation, which also means done.
    done_as: AtomicU64,
    ran: UnsafeCell<Option<Ran>>,
}

impl Cell {
    fn new() -> Cell {
        Cell {
            task: UnsafeCell::new(None),
            arrived: AtomicU32::new(0),
            done_as: AtomicU64::new(0),
            ran: UnsafeCell::new(None),
        }
    }
}

/// A value on cache lines of its own: what one thread writes often must
/// not share a line with what another reads on every step.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The batch being executed, as raw parts: it is borrowed from the caller
/// of `execute_each`, who does not return (or unwind) before every lane
/// has left the batch (see [`Shared::wait_until_left`]).
#[derive(Clone, Copy)]
struct BatchRef {
    batch: *const Batch,
    /// Entries to execute (a prefix of the batch for `execute_prefix`).
    len: usize,
}

/// What the executor threads share. One per executor, reused by every
/// batch.
pub(super) struct Shared {
    slots: Arc<[Slot]>,
    fuel: u64,
    partitions: usize,
    /// The thread that owns each slot.
    thread_of_slot: [usize; SLOTS],
    /// The ring of [`RING_CELLS`] cells.
    cells: Box<[Cell]>,
    /// Entries executed by batches before this one: generations go on
    /// growing across batches.
    base: UnsafeCell<u64>,
    /// Per entry of the batch, the slots it touches, as a bit mask (0:
    /// nothing to run, thread 0 answered it while planning). Written by
    /// thread 0 before it publishes the entry; only read after. Apart from
    /// the cells so that a lane stepping over others' entries reads two
    /// bytes each, not a cell's cache lines. Grown by thread 0 between
    /// batches only: as many as the largest batch has entries.
    masks: UnsafeCell<Vec<AtomicU16>>,
    batch: UnsafeCell<BatchRef>,
    /// Cells below this are planned (published with `Release`).
    planned: Padded<AtomicUsize>,
    /// Set when a thread panicked in this batch: every lane stops.
    aborted: Padded<AtomicBool>,
    panic: Mutex<Option<EnginePanic>>,
    /// Partition threads (1 to N-1) that have left the current batch.
    left: Padded<AtomicUsize>,
    /// Per thread: whether it is asleep waiting, and its handle to wake it.
    sleeping: Box<[Padded<AtomicBool>]>,
    handles: Mutex<Vec<Option<Thread>>>,
}

// SAFETY: the cells' `UnsafeCell`s are written by one thread at a time,
// with the hand-overs ordered by atomics: `task` by thread 0 before it
// publishes `planned` (Release) and then only by the one thread that runs
// the cell, after its Acquire load of `planned` (and, at a meeting, after
// the `AcqRel` arrival that made it the last); `ran` by that thread before
// it stores `done_as` (Release), and then only by thread 0 after it reads
// it (Acquire). Thread 0 reuses a cell only for an entry planned after the
// cell's previous entry was handed out (`RING_CELLS`). `masks`, `base` and
// `batch` change only between batches, when every lane has left (`left`,
// Release/Acquire). The batch pointer is only dereferenced inside a batch,
// while its owner waits in `execute_each`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// What one step of a lane did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// It ran, skipped or arrived at a cell.
    Moved,
    /// It waits for thread 0 to plan more, or at a meeting for another
    /// slot's lane.
    Waiting,
    /// It has walked every cell of the batch.
    Finished,
    /// The batch was aborted by a panic.
    Aborted,
}

/// Where one slot's lane is in the batch.
#[derive(Default)]
struct Lane {
    cursor: usize,
    /// Whether it has arrived at the meeting at `cursor`.
    arrived: bool,
}

/// The lanes of one thread: one per slot it owns.
pub(super) struct ThreadLanes {
    thread: usize,
    slots: Vec<usize>,
    lanes: Vec<Lane>,
    /// The sequence number it is running, for a panic report.
    pub running: Option<u64>,
}

impl ThreadLanes {
    pub fn new(thread: usize, partitions: usize) -> ThreadLanes {
        let slots: Vec<usize> = (0..SLOTS)
            .filter(|&slot| thread_of_slot(slot, partitions) == thread)
            .collect();
        ThreadLanes {
            thread,
            lanes: slots.iter().map(|_| Lane::default()).collect(),
            slots,
            running: None,
        }
    }

    pub fn begin(&mut self) {
        for lane in &mut self.lanes {
            *lane = Lane::default();
        }
        self.running = None;
    }
}

/// How long a waiting thread spins before it sleeps: a few transactions'
/// worth. A sleep and a wake-up cost tens of microseconds, and a meeting
/// makes one thread wait for another every time.
pub(super) const SPIN: Duration = Duration::from_micros(50);

/// A sleeping thread wakes at least this often to look again, so a missed
/// wake-up costs this much time, never a hang.
const SLEEP_MAX: Duration = Duration::from_millis(1);

impl Shared {
    pub fn new(slots: Arc<[Slot]>, fuel: u64, partitions: usize) -> Shared {
        Shared {
            slots,
            fuel,
            partitions,
            thread_of_slot: std::array::from_fn(|slot| thread_of_slot(slot, partitions)),
            cells: (0..RING_CELLS).map(|_| Cell::new()).collect(),
            base: UnsafeCell::new(0),
            masks: UnsafeCell::new(Vec::new()),
            batch: UnsafeCell::new(BatchRef {
                batch: std::ptr::null(),
                len: 0,
            }),
            planned: Padded(AtomicUsize::new(0)),
            aborted: Padded(AtomicBool::new(false)),
            panic: Mutex::new(None),
            left: Padded(AtomicUsize::new(0)),
            sleeping: (0..partitions)
                .map(|_| Padded(AtomicBool::new(false)))
                .collect(),
            handles: Mutex::new(vec![None; partitions]),
        }
    }

    /// Prepares the cells for a batch of `len` entries. Thread 0 only, while
    /// no lane is in a batch.
    pub fn begin(&self, batch: &Batch, len: usize) {
        // SAFETY: no lane is in a batch (the previous one waited for them
        // all to leave), so nothing else touches `masks`, `base` or `batch`.
        unsafe {
            let previous = *self.batch.get();
            *self.base.get() += previous.len as u64;
        }
        let masks = unsafe { &mut *self.masks.get() };
        if masks.len() < len {
            masks.resize_with(len, || AtomicU16::new(0));
        }
        for mask in &mut masks[..len] {
            *mask.get_mut() = 0;
        }
        unsafe {
            *self.batch.get() = BatchRef {
                batch: std::ptr::from_ref(batch),
                len,
            };
        }
        self.planned.store(0, Ordering::Relaxed);
        self.aborted.store(false, Ordering::Relaxed);
        self.left.store(0, Ordering::Release);
        self.handles.lock()[0] = Some(std::thread::current());
    }

    /// The cell of entry `index`.
    fn cell(&self, index: usize) -> &Cell {
        &self.cells[index % RING_CELLS]
    }

    /// Entry `index`'s generation: its position among every entry this
    /// executor has run, plus one (so 0 means never done).
    fn generation(&self, index: usize) -> u64 {
        // SAFETY: see `impl Sync`: changed only between batches.
        let base = unsafe { *self.base.get() };
        base + index as u64 + 1
    }

    /// Whether entry `index`, planned to run, has.
    fn ran(&self, index: usize) -> bool {
        self.cell(index).done_as.load(Ordering::Acquire) >= self.generation(index)
    }

    fn mask(&self, index: usize) -> u64 {
        // SAFETY: see `impl Sync`: changed only between batches.
        let masks = unsafe { &*self.masks.get() };
        u64::from(masks[index].load(Ordering::Relaxed))
    }

    fn batch(&self) -> BatchRef {
        unsafe { *self.batch.get() }
    }

    /// Writes cell `index`'s plan. Thread 0 only, before it publishes the
    /// cell with [`Shared::publish`].
    pub fn plan(&self, index: usize, slots: u16, task: Option<Task>) {
        let cell = self.cell(index);
        let masks = unsafe { &*self.masks.get() };
        masks[index].store(slots, Ordering::Relaxed);
        cell.arrived.store(0, Ordering::Relaxed);
        // SAFETY: the entry is not yet published, so no lane touches the
        // cell's task or result; its previous entry was handed out (ring
        // rule), and a lane that still waits on that entry reads only
        // `done_as`.
        unsafe {
            *cell.task.get() = task;
            *cell.ran.get() = None;
        }
    }

    /// Publishes every cell below `planned` and wakes sleeping lanes.
    pub fn publish(&self, planned: usize) {
        self.planned.store(planned, Ordering::Release);
        self.wake(!1);
    }

    /// Wakes the threads in `threads` that sleep.
    fn wake(&self, threads: u64) {
        for thread in 0..self.partitions {
            if threads & (1 << thread) != 0
                && self.sleeping[thread].load(Ordering::SeqCst)
                && let Some(handle) = &self.handles.lock()[thread]
            {
                handle.unpark();
            }
        }
    }

    /// Sleeps thread `thread` until woken or for [`SLEEP_MAX`], unless
    /// `ready` says it need not.
    fn sleep(&self, thread: usize, ready: impl Fn() -> bool) {
        self.sleeping[thread].store(true, Ordering::SeqCst);
        if !ready() {
            std::thread::park_timeout(SLEEP_MAX);
        }
        self.sleeping[thread].store(false, Ordering::SeqCst);
    }

    /// Waits, spinning and then sleeping, until `ready` holds or the batch
    /// is aborted.
    pub fn wait(&self, thread: usize, ready: impl Fn() -> bool) {
        let started = Instant::now();
        loop {
            for _ in 0..64 {
                if ready() || self.is_aborted() {
                    return;
                }
                std::hint::spin_loop();
            }
            if started.elapsed() > SPIN {
                self.sleep(thread, || ready() || self.is_aborted());
                if ready() || self.is_aborted() {
                    return;
                }
            }
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Stops the batch because of `panic` (the first one is kept).
    pub fn abort(&self, panic: Option<EnginePanic>) {
        if let Some(panic) = panic {
            self.panic.lock().get_or_insert(panic);
        }
        self.aborted.store(true, Ordering::Release);
        self.wake(u64::MAX);
    }

    pub fn take_panic(&self) -> Option<EnginePanic> {
        self.panic.lock().take()
    }

    /// Whether cell `index` has run (or needs no run).
    pub fn is_done(&self, index: usize) -> bool {
        self.mask(index) == 0 || self.ran(index)
    }

    /// Takes what cell `index` did, once [`Shared::is_done`]. Thread 0 only.
    pub fn take_ran(&self, index: usize) -> Option<Ran> {
        if !self.ran(index) {
            return None;
        }
        let cell = self.cell(index);
        // SAFETY: `done_as` was stored after `ran` was written, and only
        // thread 0 reads `ran` after that.
        unsafe { (*cell.ran.get()).take() }
    }

    /// Waits until every partition thread has left the batch: after this,
    /// none touches the cells or the batch again until the next `begin`.
    pub fn wait_until_left(&self, workers: usize) {
        self.wait(0, || self.left.load(Ordering::Acquire) == workers);
        // An abort ends `wait` early: then wait for real, since a lane
        // that was running a transaction leaves only after it.
        while self.left.load(Ordering::Acquire) != workers {
            std::thread::park_timeout(SLEEP_MAX);
        }
    }

    /// One step of one of `lanes`' lanes: the one furthest behind if it
    /// can move (so that answers, which go out in log order, flow), else
    /// any that can.
    pub fn step(&self, lanes: &mut ThreadLanes) -> Step {
        if self.is_aborted() {
            return Step::Aborted;
        }
        let planned = self.planned.load(Ordering::Acquire);
        let behind = (0..lanes.lanes.len()).min_by_key(|&index| lanes.lanes[index].cursor);
        let Some(behind) = behind else {
            return Step::Finished;
        };
        let mut seen = self.step_slot(lanes, behind, planned);
        if seen == Step::Moved {
            return seen;
        }
        for index in (0..lanes.lanes.len()).filter(|&index| index != behind) {
            match self.step_slot(lanes, index, planned) {
                Step::Moved => return Step::Moved,
                Step::Waiting => seen = Step::Waiting,
                _ => {}
            }
        }
        seen
    }

    /// Whether one of `lanes`' lanes can move now.
    fn can_move(&self, lanes: &ThreadLanes) -> bool {
        let planned = self.planned.load(Ordering::Acquire);
        let len = self.batch().len;
        lanes.lanes.iter().any(|lane| {
            if lane.arrived {
                self.ran(lane.cursor)
            } else {
                lane.cursor < planned.min(len)
            }
        })
    }

    /// One step of the lane of `lanes.slots[index]`, which may first step
    /// over any number of cells that do not touch its slot.
    fn step_slot(&self, lanes: &mut ThreadLanes, index: usize, planned: usize) -> Step {
        let BatchRef { batch, len } = self.batch();
        let slot = lanes.slots[index];
        let lane = &mut lanes.lanes[index];
        let me = 1u16 << slot;
        // SAFETY: see `impl Sync`: changed only between batches.
        let masks = unsafe { &*self.masks.get() };
        let mut cursor = lane.cursor;
        while cursor < planned && masks[cursor].load(Ordering::Relaxed) & me == 0 {
            cursor += 1;
        }
        let skipped = cursor != lane.cursor;
        lane.cursor = cursor;
        if cursor == len {
            return Step::Finished;
        }
        if cursor >= planned {
            return if skipped { Step::Moved } else { Step::Waiting };
        }
        let slots = masks[cursor].load(Ordering::Relaxed);
        let cell = self.cell(cursor);
        if slots != me {
            if !lane.arrived {
                lane.arrived = true;
                let last = cell.arrived.fetch_add(1, Ordering::AcqRel) + 1 == slots.count_ones();
                if !last {
                    return Step::Moved;
                }
            } else if self.ran(cursor) {
                lane.arrived = false;
                lane.cursor += 1;
                return Step::Moved;
            } else {
                return if skipped { Step::Moved } else { Step::Waiting };
            }
        }
        // SAFETY: the caller of `execute_each` holds the batch until every
        // lane has left it.
        let batch = unsafe { &*batch };
        lanes.running = Some(batch.first_seq + cursor as u64);
        // SAFETY: this lane alone runs the cell: it is the cell's only
        // slot, or the last of its slots' lanes to arrive.
        let task = unsafe { (*cell.task.get()).take() }.expect("a planned cell holds its task");
        let ran = self.run(lanes.thread, batch, cursor, task);
        unsafe { *cell.ran.get() = Some(ran) };
        cell.done_as
            .store(self.generation(cursor), Ordering::Release);
        lanes.running = None;
        let lane = &mut lanes.lanes[index];
        lane.arrived = false;
        lane.cursor += 1;
        // Thread 0 hands the result out; the meeting's others go on.
        let mut threads = 1;
        if slots != me {
            for other in 0..SLOTS {
                if slots & (1 << other) != 0 {
                    threads |= 1 << self.thread_of_slot[other];
                }
            }
        }
        self.wake(threads & !(1 << lanes.thread) | 1);
        Step::Moved
    }

    fn run(&self, thread: usize, batch: &Batch, index: usize, task: Task) -> Ran {
        #[cfg(feature = "fault-injection")]
        if task.panic {
            panic!("fault injection: partition thread {thread} was told to panic");
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = thread;
        let args = match &batch.entries[index] {
            Entry::Invoke(invocation) | Entry::InvokeChecked { invocation, .. } => &invocation.args,
            _ => unreachable!("only calls are planned to run on a lane"),
        };
        let call = Call {
            procedure: task.prepared.procedure,
            export: Export::Procedure,
            args,
            encoding: task.encoding,
            seq: batch.first_seq + index as u64,
            now_ms: batch.timestamp_ms,
            fuel: self.fuel,
        };
        let Prepared {
            module,
            declared,
            slots,
            ..
        } = task.prepared;
        // SAFETY: see `Prepared::module`.
        let module = unsafe { &*module };
        run_in_slots(&self.slots, module, declared, slots, &call)
    }

    /// Walks `lanes` to the end of the batch (or its abort), waiting
    /// whenever none can move. For partition threads.
    fn walk(&self, lanes: &mut ThreadLanes) {
        loop {
            match self.step(lanes) {
                Step::Moved => {}
                Step::Finished | Step::Aborted => return,
                Step::Waiting => {
                    let lanes = &*lanes;
                    self.wait(lanes.thread, || self.can_move(lanes));
                }
            }
        }
    }

    /// Waits until `lanes` can move, or cell `index` is done, or the batch
    /// is aborted. For thread 0.
    pub fn wait_for_own_or(&self, lanes: &ThreadLanes, index: usize) {
        self.wait(0, || self.is_done(index) || self.can_move(lanes));
    }
}

/// A partition thread, and its signal to start on a batch.
pub(super) struct Worker {
    go: Sender<()>,
    thread: JoinHandle<()>,
}

/// Spawns partition thread `id`.
pub(super) fn spawn_worker(id: usize, shared: Arc<Shared>) -> Worker {
    let (go, started) = crossbeam_channel::unbounded::<()>();
    let name = format!("ordo-partition-{id}");
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .stack_size(ENGINE_THREAD_STACK_BYTES)
        .spawn(move || {
            shared.handles.lock()[id] = Some(std::thread::current());
            let mut lanes = ThreadLanes::new(id, shared.partitions);
            while recv_spinning(&started).is_some() {
                lanes.begin();
                let walked = std::panic::catch_unwind(AssertUnwindSafe(|| shared.walk(&mut lanes)));
                if let Err(payload) = walked {
                    // Thread 0 waits for this thread's results: this tells
                    // it to stop waiting, and why. The thread then ends.
                    shared.abort(Some(EnginePanic {
                        thread: name,
                        seq: lanes.running,
                        message: panic_message(&*payload),
                    }));
                    shared.left.fetch_add(1, Ordering::AcqRel);
                    shared.wake(1);
                    return;
                }
                shared.left.fetch_add(1, Ordering::AcqRel);
                shared.wake(1);
            }
        })
        .expect("spawning a partition thread");
    Worker { go, thread }
}

impl Worker {
    /// Starts the thread on the batch `Shared::begin` set up. False if the
    /// thread has ended (after a panic).
    pub fn start(&self) -> bool {
        self.go.send(()).is_ok()
    }

    /// Ends the thread's loop and joins it.
    pub fn stop(self) {
        drop(self.go);
        let _ = self.thread.join();
    }
}

/// Receives from `channel`, spinning for up to [`SPIN`] before blocking.
/// `None` once the channel is closed and empty.
fn recv_spinning<T>(channel: &Receiver<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        for _ in 0..64 {
            match channel.try_recv() {
                Ok(value) => return Some(value),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if started.elapsed() > SPIN {
            return channel.recv().ok();
        }
    }
}

/// Lanes 1 to N-1 without threads: thread 0 steps them in an order a
/// seeded generator picks (SplitMix64).
pub(super) struct SeededLanes {
    /// Threads 1 to N-1's lanes, at index `thread - 1`.
    threads: Vec<ThreadLanes>,
    rng: u64,
}

/// The most steps the other lanes take between two of thread 0's own: a
/// few, so that a seed can leave a lane far behind or keep it level.
const STEPS_BETWEEN_OWN_MAX: u64 = 3;

impl SeededLanes {
    pub fn new(partitions: usize, seed: u64) -> SeededLanes {
        SeededLanes {
            threads: (1..partitions)
                .map(|thread| ThreadLanes::new(thread, partitions))
                .collect(),
            rng: seed,
        }
    }

    pub fn begin(&mut self) {
        for lanes in &mut self.threads {
            lanes.begin();
        }
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Lets the lanes take from 0 to a few steps, as many as the seed says:
    /// what real threads get done while thread 0 does something else.
    pub fn wander(&mut self, shared: &Shared) {
        let steps = self.next_random() % (STEPS_BETWEEN_OWN_MAX + 1);
        for _ in 0..steps {
            if !self.step(shared) {
                return;
            }
        }
    }

    /// One step of a lane the seed picks among those that can move; false
    /// if none can.
    pub fn step(&mut self, shared: &Shared) -> bool {
        let count = self.threads.len();
        if count == 0 {
            return false;
        }
        let first = (self.next_random() % count as u64) as usize;
        for offset in 0..count {
            let lanes = &mut self.threads[(first + offset) % count];
            // A panic is the lane's thread's, as on a real thread.
            let step = std::panic::catch_unwind(AssertUnwindSafe(|| shared.step(lanes)))
                .unwrap_or_else(|payload| {
                    std::panic::resume_unwind(Box::new(EnginePanic {
                        thread: format!("ordo-partition-{}", lanes.thread),
                        seq: lanes.running,
                        message: panic_message(&*payload),
                    }))
                });
            if step == Step::Moved {
                return true;
            }
        }
        false
    }
}

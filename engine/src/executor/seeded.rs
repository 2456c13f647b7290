//! Partition threads without threads: the dispatcher's own thread runs
//! every partition thread's queue, and a seeded generator decides which
//! queue takes its next step, and when (while the dispatcher queues work,
//! collects results, or waits for them). A simulator uses it to explore
//! interleavings of the partition threads and to replay one by its seed
//! ([`super::PartitionSchedule::Seeded`]).
//!
//! It keeps the threads' rules: each queue runs in log order; a
//! transaction that spans queues is a [`Meeting`] that the last of them
//! to arrive runs while the others wait there; results reach the
//! dispatcher in the order they were made. What it cannot show is what
//! real threads add beyond those rules (memory ordering, the OS's
//! timing); the real-thread tests cover that side.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use super::{EnginePanic, Meeting, Slot, Work, WorkDone, panic_message, run_task};

/// The queues of partition threads 1 to N-1 (index `thread - 1`), run on
/// the caller's thread in an order the seed picks.
pub(super) struct SeededLanes {
    queues: Vec<VecDeque<Work>>,
    /// The meeting each thread has arrived at and waits in, not yet run.
    waiting: Vec<Option<Arc<Meeting>>>,
    /// Reports not yet collected by the dispatcher, oldest first.
    reports: VecDeque<WorkDone>,
    /// SplitMix64 state.
    rng: u64,
    fuel: u64,
}

/// The most steps the partition threads take between two of the
/// dispatcher's own (queueing an entry, collecting results): a few, so
/// that a seed can leave a thread far behind or keep it level.
const STEPS_BETWEEN_DISPATCHES_MAX: u64 = 3;

impl SeededLanes {
    pub(super) fn new(partition_threads: usize, seed: u64, fuel: u64) -> SeededLanes {
        SeededLanes {
            queues: (0..partition_threads).map(|_| VecDeque::new()).collect(),
            waiting: vec![None; partition_threads],
            reports: VecDeque::new(),
            rng: seed,
            fuel,
        }
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Queues `work` on partition thread `thread` (1 or more).
    pub(super) fn queue(&mut self, thread: usize, work: Work) {
        self.queues[thread - 1].push_back(work);
    }

    /// The oldest report not yet collected.
    pub(super) fn take_report(&mut self) -> Option<WorkDone> {
        self.reports.pop_front()
    }

    /// Lets the partition threads take from 0 to a few steps, as many as
    /// the seed says: what real threads get done while the dispatcher
    /// does something else.
    pub(super) fn wander(&mut self, slots: &[Slot]) {
        let steps = self.next_random() % (STEPS_BETWEEN_DISPATCHES_MAX + 1);
        for _ in 0..steps {
            if !self.step(slots) {
                return;
            }
        }
    }

    /// One step of a partition thread the seed picks among those that can
    /// move. False only if none can, which means every queue is empty: a
    /// thread waits only at a meeting whose other threads still have it
    /// queued, and since meetings are queued in log order on every
    /// thread they need, one of those can always move.
    pub(super) fn step(&mut self, slots: &[Slot]) -> bool {
        let movable: Vec<usize> = (0..self.queues.len())
            .filter(|&lane| self.can_move(lane))
            .collect();
        if movable.is_empty() {
            return false;
        }
        let lane = movable[(self.next_random() % movable.len() as u64) as usize];
        self.step_lane(slots, lane);
        true
    }

    fn can_move(&self, lane: usize) -> bool {
        match &self.waiting[lane] {
            Some(meeting) => meeting.is_finished(),
            None => !self.queues[lane].is_empty(),
        }
    }

    fn step_lane(&mut self, slots: &[Slot], lane: usize) {
        let thread = lane + 1;
        if self.waiting[lane].take().is_some() {
            // The meeting it waited at has run: it goes on past it.
            self.queues[lane].pop_front();
            self.reports.push_back(WorkDone::Finished(thread, None));
            return;
        }
        let (task, meeting) = match self.queues[lane].front() {
            Some(Work::Run(_)) => match self.queues[lane].pop_front() {
                Some(Work::Run(task)) => (task, None),
                _ => unreachable!("the front was a task"),
            },
            Some(Work::Meet(meeting)) => {
                let meeting = meeting.clone();
                match meeting.arrive_without_waiting() {
                    Some(task) => {
                        self.queues[lane].pop_front();
                        (task, Some(meeting))
                    }
                    None => {
                        self.waiting[lane] = Some(meeting);
                        return;
                    }
                }
            }
            None => return,
        };
        let seq = task.seq;
        let index = task.index;
        let fuel = self.fuel;
        // A panic is a partition thread's, as it would be on a real one:
        // the dispatcher re-raises it naming the thread.
        let ran =
            std::panic::catch_unwind(AssertUnwindSafe(|| run_task(thread, slots, fuel, task)))
                .unwrap_or_else(|payload| {
                    std::panic::resume_unwind(Box::new(EnginePanic {
                        thread: format!("ordo-partition-{thread}"),
                        seq: Some(seq),
                        message: panic_message(&*payload),
                    }))
                });
        if let Some(meeting) = meeting {
            meeting.finish();
        }
        self.reports
            .push_back(WorkDone::Finished(thread, Some((index, ran))));
    }
}

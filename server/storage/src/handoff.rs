//! The hand-off between connection tasks and the commit pipeline.
//!
//! Connections [`Queue::push`] write operations; the commit pipeline blocks in
//! [`Queue::take_batch`] and takes everything queued at once (that is the
//! group in group commit). Each operation carries a [`Completer`]; its
//! connection awaits the matching [`Completion`], a tiny one-shot future.
//!
//! Invariants, checked with loom (`cargo test -p mcstore-storage --features
//! loom-model --lib handoff`):
//! - every pushed item is taken exactly once, in push order, unless the
//!   push failed because the queue was closed (the item is handed back);
//! - after [`Queue::close`], the writer still receives everything pushed
//!   before the close, then learns the queue is closed;
//! - every completion resolves exactly once: with the value, or with
//!   [`Abandoned`] if its completer was dropped without a value.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[cfg(feature = "loom-model")]
use loom::sync::{Arc, Condvar, Mutex};
#[cfg(not(feature = "loom-model"))]
use std::sync::{Arc, Condvar, Mutex};

/// A multi-producer queue drained in batches by one consumer.
pub struct Queue<T> {
    state: Mutex<QueueState<T>>,
    not_empty: Condvar,
}

struct QueueState<T> {
    items: Vec<T>,
    closed: bool,
}

/// What [`Queue::take_batch`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Items were moved into the output vector.
    Items,
    /// The timeout passed with nothing queued.
    Idle,
    /// The queue is closed and empty: no item will ever come.
    Closed,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            state: Mutex::new(QueueState {
                items: Vec::new(),
                closed: false,
            }),
            not_empty: Condvar::new(),
        }
    }
}

impl<T> Queue<T> {
    /// Queues an item; hands it back if the queue is closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.state.lock().expect("queue lock");
        if state.closed {
            return Err(item);
        }
        let was_empty = state.items.is_empty();
        state.items.push(item);
        drop(state);
        if was_empty {
            self.not_empty.notify_one();
        }
        Ok(())
    }

    /// Moves up to `max` queued items into `out`, waiting up to `timeout`
    /// (forever when `None`) for the first one.
    pub fn take_batch(&self, max: usize, out: &mut Vec<T>, timeout: Option<Duration>) -> Taken {
        let mut state = self.state.lock().expect("queue lock");
        while state.items.is_empty() {
            if state.closed {
                return Taken::Closed;
            }
            match timeout {
                None => state = self.not_empty.wait(state).expect("queue lock"),
                Some(timeout) => {
                    let (next, result) = self
                        .not_empty
                        .wait_timeout(state, timeout)
                        .expect("queue lock");
                    state = next;
                    if result.timed_out() && state.items.is_empty() {
                        return if state.closed {
                            Taken::Closed
                        } else {
                            Taken::Idle
                        };
                    }
                }
            }
        }
        let take = state.items.len().min(max);
        out.extend(state.items.drain(..take));
        Taken::Items
    }

    /// Refuses further pushes; items already queued are still taken.
    pub fn close(&self) {
        self.state.lock().expect("queue lock").closed = true;
        self.not_empty.notify_all();
    }
}

/// The completer was dropped without a value (the writer stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

enum SlotState<T> {
    Waiting(Option<Waker>),
    Done(T),
    Abandoned,
    Taken,
}

struct Slot<T> {
    state: Mutex<SlotState<T>>,
}

/// The writer's end of a one-shot reply.
pub struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

/// The connection's end of a one-shot reply: a future.
pub struct Completion<T> {
    slot: Arc<Slot<T>>,
}

/// A connected completer and completion.
pub fn completion<T>() -> (Completer<T>, Completion<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState::Waiting(None)),
    });
    (
        Completer {
            slot: Some(slot.clone()),
        },
        Completion { slot },
    )
}

impl<T> Completer<T> {
    /// Delivers the value and wakes the waiting task.
    pub fn complete(mut self, value: T) {
        if let Some(slot) = self.slot.take() {
            resolve(&slot, SlotState::Done(value));
        }
    }
}

fn resolve<T>(slot: &Slot<T>, outcome: SlotState<T>) {
    let mut state = slot.state.lock().expect("slot lock");
    let waker = match std::mem::replace(&mut *state, outcome) {
        SlotState::Waiting(waker) => waker,
        _ => None,
    };
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            resolve(&slot, SlotState::Abandoned);
        }
    }
}

impl<T> Future for Completion<T> {
    type Output = Result<T, Abandoned>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.state.lock().expect("slot lock");
        match std::mem::replace(&mut *state, SlotState::Taken) {
            SlotState::Done(value) => Poll::Ready(Ok(value)),
            SlotState::Abandoned => Poll::Ready(Err(Abandoned)),
            SlotState::Waiting(_) => {
                *state = SlotState::Waiting(Some(cx.waker().clone()));
                Poll::Pending
            }
            SlotState::Taken => panic!("completion polled after it resolved"),
        }
    }
}

#[cfg(all(test, feature = "loom-model"))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// Explores every interleaving with up to three preemptions (loom's
    /// recommended bound: bugs almost always need only a few).
    fn model(body: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(body);
    }

    /// Two connections hand one operation each to the writer, which
    /// completes whatever batches it takes; each connection gets its own
    /// answer, exactly once, whatever the interleaving.
    #[test]
    fn every_operation_is_answered_once_with_its_own_value() {
        model(|| {
            let queue: Arc<Queue<(u32, Completer<u32>)>> = Arc::new(Queue::default());
            let writer = {
                let queue = queue.clone();
                thread::spawn(move || {
                    let mut answered = 0;
                    let mut batch = Vec::new();
                    while answered < 2 {
                        assert_eq!(queue.take_batch(8, &mut batch, None), Taken::Items);
                        for (op, completer) in batch.drain(..) {
                            completer.complete(op * 10);
                            answered += 1;
                        }
                    }
                })
            };
            let connections: Vec<_> = (1..=2)
                .map(|op| {
                    let queue = queue.clone();
                    thread::spawn(move || {
                        let (completer, completion) = completion();
                        assert!(queue.push((op, completer)).is_ok());
                        assert_eq!(loom::future::block_on(completion), Ok(op * 10));
                    })
                })
                .collect();
            for connection in connections {
                connection.join().unwrap();
            }
            writer.join().unwrap();
        });
    }

    /// Closing while a connection pushes: either the push is refused and the
    /// item handed back, or the writer still drains it before seeing Closed.
    #[test]
    fn close_never_loses_an_accepted_item() {
        model(|| {
            let queue: Arc<Queue<(u32, Completer<u32>)>> = Arc::new(Queue::default());
            let connection = {
                let queue = queue.clone();
                thread::spawn(move || {
                    let (completer, completion) = completion();
                    match queue.push((7, completer)) {
                        Ok(()) => assert_eq!(loom::future::block_on(completion), Ok(70)),
                        // Refused: the completer comes back and is dropped.
                        Err(item) => {
                            drop(item);
                            assert_eq!(loom::future::block_on(completion), Err(Abandoned));
                        }
                    }
                })
            };
            let closer = {
                let queue = queue.clone();
                thread::spawn(move || queue.close())
            };
            let mut batch = Vec::new();
            loop {
                match queue.take_batch(8, &mut batch, None) {
                    Taken::Items => {
                        for (op, completer) in batch.drain(..) {
                            completer.complete(op * 10);
                        }
                    }
                    Taken::Closed => break,
                    Taken::Idle => unreachable!("no timeout was given"),
                }
            }
            closer.join().unwrap();
            connection.join().unwrap();
        });
    }

    /// A writer that stops without answering resolves the waiting
    /// connection with `Abandoned` instead of leaving it hanging.
    #[test]
    fn a_dropped_completer_wakes_its_waiter() {
        model(|| {
            let (completer, completion) = completion::<u32>();
            let writer = thread::spawn(move || drop(completer));
            assert_eq!(loom::future::block_on(completion), Err(Abandoned));
            writer.join().unwrap();
        });
    }
}

#[cfg(all(test, not(feature = "loom-model")))]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_push_order_and_respect_the_cap() {
        let queue = Queue::default();
        for i in 0..5 {
            queue.push(i).unwrap();
        }
        let mut batch = Vec::new();
        assert_eq!(queue.take_batch(3, &mut batch, None), Taken::Items);
        assert_eq!(batch, vec![0, 1, 2]);
        batch.clear();
        assert_eq!(queue.take_batch(3, &mut batch, None), Taken::Items);
        assert_eq!(batch, vec![3, 4]);
        assert_eq!(
            queue.take_batch(3, &mut batch, Some(Duration::from_millis(1))),
            Taken::Idle
        );
        queue.close();
        assert_eq!(queue.push(9), Err(9));
        assert_eq!(queue.take_batch(3, &mut batch, None), Taken::Closed);
    }
}

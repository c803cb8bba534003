//! A certificate task's inbox: a small bounded queue, one receiver, any
//! number of senders. Each certificate has one for its whole life and it
//! is nearly always empty, so it must be cheap to hold: tokio's `mpsc`
//! allocates its queue in blocks of 32 slots up front, behind cache-padded
//! ends, about 1.3 KiB per channel (heaptrack, 50,000 certificates); this
//! is one allocation of about 150 bytes until a command is queued.
//!
//! Semantics as tokio's bounded channel: `send` waits while the queue is
//! full, `try_send` does not, both fail once the receiver is gone; `recv`
//! returns `None` once every sender is gone and the queue is empty, and is
//! cancel-safe (a command is taken only in the poll that returns it).

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Why a command was not queued; the command comes back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError<T> {
    #[error("the inbox is full")]
    Full(T),
    #[error("the task is gone")]
    Closed(T),
}

struct Shared<T> {
    queue: Mutex<VecDeque<T>>,
    capacity: usize,
    /// Wakes the receiver: a command was queued or the last sender left.
    queued: Notify,
    /// Wakes waiting senders: a command was taken or the receiver left.
    taken: Notify,
    senders: AtomicUsize,
    closed: AtomicBool,
}

impl<T> Shared<T> {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A new inbox holding at most `capacity` (at least 1) commands.
pub(crate) fn inbox<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        capacity: capacity.max(1),
        queued: Notify::new(),
        taken: Notify::new(),
        senders: AtomicUsize::new(1),
        closed: AtomicBool::new(false),
    });
    (Sender { shared: Arc::clone(&shared) }, Receiver { shared })
}

// === impl Sender ===

pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` unless the inbox is full or its task gone.
    pub(crate) fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SendError::Closed(item));
        }
        let mut queue = self.shared.queue();
        if queue.len() >= self.shared.capacity {
            return Err(SendError::Full(item));
        }
        queue.push_back(item);
        drop(queue);
        self.shared.queued.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting while the inbox is full; the item comes back
    /// when the task is gone.
    pub(crate) async fn send(&self, mut item: T) -> Result<(), T> {
        loop {
            // Registered before the check, so a take or a close in between
            // is not missed.
            let mut taken = pin!(self.shared.taken.notified());
            taken.as_mut().enable();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(SendError::Closed(back)) => return Err(back),
                Err(SendError::Full(back)) => item = back,
            }
            taken.await;
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.queued.notify_one();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("capacity", &self.shared.capacity).finish_non_exhaustive()
    }
}

// === impl Receiver ===

pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next command; `None` once every sender is gone and none is left.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            let mut queued = pin!(self.shared.queued.notified());
            queued.as_mut().enable();
            let next = self.shared.queue().pop_front();
            if let Some(item) = next {
                self.shared.taken.notify_one();
                return Some(item);
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            queued.await;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.taken.notify_waiters();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("capacity", &self.shared.capacity).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn commands_arrive_in_order_and_a_full_inbox_refuses_try_send() {
        let (tx, mut rx) = inbox(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.send(2).await, Ok(()));
        assert_eq!(tx.try_send(3), Err(SendError::Full(3)));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(tx.try_send(3), Ok(()));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
    }

    #[tokio::test]
    async fn send_waits_for_room() {
        let (tx, mut rx) = inbox(1);
        tx.send(1).await.unwrap();
        let waiting = tokio::spawn(async move { tx.send(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(rx.recv().await, Some(2));
        // Every sender gone (the spawned one with its task): the end.
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn recv_wakes_for_a_command_and_ends_when_the_last_sender_goes() {
        let (tx, mut rx) = inbox(4);
        let other = tx.clone();
        let receiving = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        other.send("a").await.unwrap();
        drop(other);
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        assert_eq!(receiving.await.unwrap(), (Some("a"), None));
    }

    #[tokio::test]
    async fn a_gone_receiver_gives_the_command_back_even_to_a_waiting_sender() {
        let (tx, rx) = inbox(1);
        tx.send(1).await.unwrap();
        let other = tx.clone();
        let waiting = tokio::spawn(async move { other.send(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(2));
        assert_eq!(tx.try_send(3), Err(SendError::Closed(3)));
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_nothing() {
        let (tx, mut rx) = inbox(4);
        let timed_out = tokio::time::timeout(Duration::from_millis(10), rx.recv()).await;
        assert!(timed_out.is_err());
        tx.send(7).await.unwrap();
        assert_eq!(rx.recv().await, Some(7));
    }
}

//! A worker's stop signal for its connections, cheap enough to poll on every wake-up of every
//! connection task: a flag and the wakers of the tasks waiting on it. (A `watch` receiver per
//! connection cost about 250 instructions per request: a lock and a version check each time the
//! task was polled.)

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// Set once, when the worker stops; every [`StopWait`] then completes.
#[derive(Default)]
pub struct Stop {
    stopped: Cell<bool>,
    waiting: RefCell<Slab<Waker>>,
}

impl Stop {
    /// A future that completes when [`Stop::stop`] is called (at once if it was).
    pub fn wait(&self) -> StopWait<'_> {
        StopWait {
            stop: self,
            key: None,
        }
    }

    /// Stop: wake every waiting task.
    pub fn stop(&self) {
        self.stopped.set(true);
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for (_, waker) in waiting {
            waker.wake();
        }
    }
}

/// Waits for the worker's stop. Registers its task's waker once and checks the flag on each
/// poll after that.
pub struct StopWait<'a> {
    stop: &'a Stop,
    key: Option<usize>,
}

impl Future for StopWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.stopped.get() {
            self.key = None;
            return Poll::Ready(());
        }
        let mut waiting = self.stop.waiting.borrow_mut();
        match self.key.and_then(|k| waiting.get_mut(k)) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                let key = waiting.insert(cx.waker().clone());
                drop(waiting);
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for StopWait<'_> {
    fn drop(&mut self) {
        // After the stop the slab was emptied, and keys handed out since belong to nobody else:
        // nothing registers once the flag is set.
        if let Some(key) = self.key {
            if !self.stop.stopped.get() {
                self.stop.waiting.borrow_mut().try_remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn waiters_register_once_leave_when_dropped_and_wake_on_stop() {
        let stop = Stop::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = Box::pin(stop.wait());
        let mut b = Box::pin(stop.wait());
        for _ in 0..3 {
            assert!(a.as_mut().poll(&mut cx).is_pending());
        }
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(stop.waiting.borrow().len(), 2, "one slot per waiter");
        drop(b);
        assert_eq!(stop.waiting.borrow().len(), 1);
        stop.stop();
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            1,
            "the waiting task is woken"
        );
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(
            Box::pin(stop.wait()).as_mut().poll(&mut cx).is_ready(),
            "a wait begun after the stop completes at once"
        );
    }
}

//! The two ways the IO object arms a timer: exactly (the send timeout, the pace, the rate
//! window), and lazily (read deadlines, pushed later by every keep-alive request).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::time::{Instant, Sleep};

/// Poll a timer that must fire at `at`: created on first use, moved when `at` changed.
pub(super) fn poll_timer(
    slot: &mut Option<Pin<Box<Sleep>>>,
    at: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let timer = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
    if timer.deadline() != at {
        timer.as_mut().reset(at);
    }
    timer.as_mut().poll(cx)
}

/// Poll a timer for `deadline` lazily; Ready(()) once it has passed.
///
/// A keep-alive connection pushes its deadline later with every request, and moving a
/// timer-wheel entry each time costs more than the request's own work. So an armed timer that
/// fires no later than `deadline` is left alone; when it fires early, it is re-armed once for
/// the real deadline. Only an earlier deadline forces a reset.
pub(super) fn poll_lazy_deadline(
    slot: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let timer = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    loop {
        ready!(timer.as_mut().poll(cx));
        if timer.deadline() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
    }
}

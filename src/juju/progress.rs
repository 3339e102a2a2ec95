//! Progress from the library's commands to the operator: `action-log` lines in an action
//! (`juju-log` in a hook), rate-limited. Get one with [`crate::juju::Context::progress`].

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::juju::Context;
use crate::progress::Progress;
use crate::progress::human_size;

/// How often a byte-count line is logged at most.
const EVERY: Duration = Duration::from_secs(5);

/// Sends steps and warnings at once, and bytes done with the rate at most every 5 seconds.
#[derive(Debug)]
pub struct ActionProgress<'a> {
    ctx: &'a Context,
    start: Instant,
    last: Cell<Instant>,
}

impl<'a> ActionProgress<'a> {
    /// Progress reported through `ctx`.
    pub fn new(ctx: &'a Context) -> Self {
        let now = Instant::now();
        ActionProgress {
            ctx,
            start: now,
            last: Cell::new(now),
        }
    }
}

impl Progress for ActionProgress<'_> {
    fn bytes_done(&self, bytes: u64, total: Option<u64>) {
        if self.last.get().elapsed() < EVERY {
            return;
        }
        self.last.set(Instant::now());
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = human_size((bytes as f64 / secs) as u64);
        let line = match total {
            Some(t) if t > 0 => format!(
                "{} of {} ({}%), {rate}/s",
                human_size(bytes),
                human_size(t),
                bytes * 100 / t
            ),
            _ => format!("{} done, {rate}/s", human_size(bytes)),
        };
        self.ctx.log(&line);
    }

    fn step(&self, message: &str) {
        self.ctx.log(message);
    }

    fn warn(&self, message: &str) {
        self.ctx.log(&format!("warning: {message}"));
    }
}

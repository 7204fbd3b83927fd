//! Long actions (an update, a config apply, a reboot) run as operations: the
//! call answers 202 with an id to poll, and while one mutating action runs a
//! second one gets 409 instead of racing it.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Operations kept for polling once done.
const KEEP: usize = 32;
/// The most output one operation keeps (the end is what matters).
const MAX_OUTPUT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub id: u64,
    pub action: String,
    pub state: State,
    pub started: u64,
    pub finished: Option<u64>,
    pub output: String,
}

#[derive(Default)]
struct Inner {
    next: u64,
    done: VecDeque<Operation>,
    running: Option<Operation>,
}

#[derive(Default, Clone)]
pub struct Ops(Arc<Mutex<Inner>>);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Held while a mutating action runs; finishing it frees the machine.
pub struct Ticket {
    ops: Ops,
    pub id: u64,
}

impl Ops {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an operation, or names the one that is running.
    pub fn begin(&self, action: &str) -> Result<Ticket, Operation> {
        let mut inner = self.lock();
        if let Some(op) = &inner.running {
            return Err(op.clone());
        }
        inner.next += 1;
        let id = inner.next;
        inner.running =
            Some(Operation { id, action: action.to_string(), state: State::Running, started: now(), finished: None, output: String::new() });
        Ok(Ticket { ops: self.clone(), id })
    }

    pub fn get(&self, id: u64) -> Option<Operation> {
        let inner = self.lock();
        inner.running.iter().chain(inner.done.iter()).find(|o| o.id == id).cloned()
    }
}

impl Ticket {
    pub fn finish(self, ok: bool, output: &str) -> Operation {
        let mut inner = self.ops.lock();
        let mut op = inner.running.take().unwrap_or_else(|| Operation {
            id: self.id,
            action: String::new(),
            state: State::Running,
            started: now(),
            finished: None,
            output: String::new(),
        });
        op.state = if ok { State::Succeeded } else { State::Failed };
        op.finished = Some(now());
        let start = output.len().saturating_sub(MAX_OUTPUT);
        let start = (start..output.len()).find(|i| output.is_char_boundary(*i)).unwrap_or(output.len());
        op.output = output[start..].to_string();
        if inner.done.len() >= KEEP {
            inner.done.pop_front();
        }
        inner.done.push_back(op.clone());
        op
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_action_waits_for_the_first() {
        let ops = Ops::default();
        let t = ops.begin("update apply").unwrap();
        let busy = ops.begin("reboot").err().unwrap();
        assert_eq!(busy.action, "update apply");
        assert_eq!(ops.get(t.id).unwrap().state, State::Running);
        let id = t.id;
        t.finish(true, "done");
        assert_eq!(ops.get(id).unwrap().state, State::Succeeded);
        assert!(ops.begin("reboot").is_ok());
    }

    #[test]
    fn output_keeps_its_end_on_a_char_boundary() {
        let ops = Ops::default();
        let t = ops.begin("x").unwrap();
        let long = "é".repeat(MAX_OUTPUT);
        let op = t.finish(false, &long);
        assert!(op.output.len() <= MAX_OUTPUT);
        assert_eq!(op.state, State::Failed);
    }
}

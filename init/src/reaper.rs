//! The one place that waits for children. Every pid init starts is registered
//! with its owner; exits are handed to that owner, and orphans that the kernel
//! reparents to PID 1 are reaped and forgotten. Nothing else calls wait.

use crate::sys::ExitStatus;
use std::collections::HashMap;

/// Who a child belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A supervised process, by its index in the supervisor.
    Supervised(usize),
    /// An exec health check of the supervised process at that index.
    Check(usize),
    /// A runtime call (`crun kill`, `crun delete`) for the supervised
    /// process at that index.
    Runtime(usize),
}

/// An exit handed to its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    pub owner: Owner,
    pub status: ExitStatus,
}

#[derive(Debug, Default)]
pub struct Registry {
    owners: HashMap<i32, Owner>,
    orphans_reaped: u64,
}

impl Registry {
    pub fn register(&mut self, pid: i32, owner: Owner) {
        self.owners.insert(pid, owner);
    }

    pub fn orphans_reaped(&self) -> u64 {
        self.orphans_reaped
    }

    /// Sorts one reaped child: the owner's exit, or `None` for an orphan.
    pub fn take(&mut self, pid: i32, status: ExitStatus) -> Option<Exit> {
        match self.owners.remove(&pid) {
            Some(owner) => Some(Exit { pid, owner, status }),
            None => {
                self.orphans_reaped += 1;
                None
            }
        }
    }

    /// Reaps every child that has exited, with `reap` standing for waitpid.
    pub fn reap_with(
        &mut self,
        mut reap: impl FnMut() -> std::io::Result<Option<(i32, ExitStatus)>>,
    ) -> Vec<Exit> {
        let mut exits = Vec::new();
        while let Ok(Some((pid, status))) = reap() {
            match self.take(pid, status) {
                Some(exit) => exits.push(exit),
                None => tracing::debug!("reaped orphan pid={pid} {status}"),
            }
        }
        exits
    }

    pub fn reap(&mut self) -> Vec<Exit> {
        self.reap_with(crate::sys::reap_one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_exits_reach_their_owner_with_the_exact_status() {
        let mut reg = Registry::default();
        reg.register(10, Owner::Supervised(0));
        reg.register(11, Owner::Supervised(1));
        let mut pending = vec![
            (11, ExitStatus::Code(7)),
            (99, ExitStatus::Code(0)),
            (10, ExitStatus::Signal(9)),
        ];
        pending.reverse();
        let exits = reg.reap_with(|| Ok(pending.pop()));
        assert_eq!(
            exits,
            [
                Exit { pid: 11, owner: Owner::Supervised(1), status: ExitStatus::Code(7) },
                Exit { pid: 10, owner: Owner::Supervised(0), status: ExitStatus::Signal(9) },
            ]
        );
        assert_eq!(reg.orphans_reaped(), 1);
        assert!(reg.take(10, ExitStatus::Code(0)).is_none(), "a pid is handed out once");
    }

    #[test]
    fn no_children_ends_the_loop() {
        let mut reg = Registry::default();
        let exits = reg.reap_with(|| Err(std::io::Error::from_raw_os_error(libc::ECHILD)));
        assert!(exits.is_empty());
    }
}

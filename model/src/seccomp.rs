//! Cairn's default seccomp filter.
//!
//! A deny list, not an allow list: everything is allowed except the calls
//! that reach around the container into the kernel or the host (loading
//! modules or kernels, rebooting, tracing and reading other processes,
//! kernel keyrings, BPF, raw I/O ports) and the calls that only matter to
//! programs doing something a service should not. An allow list in the
//! style of Docker's is tighter, but it has to follow every new syscall
//! ordinary programs start to use (clone3, openat2, faccessat2, ...) or
//! they break in odd ways; a deny list of a few dozen well-known dangerous
//! calls does not go stale that way. Capabilities and namespaces do the
//! rest of the confining.
//!
//! Calls that a capability exists to allow (setting the clock, mounting)
//! are denied only when the service does not hold that capability, so
//! granting `CAP_SYS_TIME` or `CAP_SYS_ADMIN` in the spec is enough to use
//! them. Without `CAP_SYS_ADMIN`, `clone` with a `CLONE_NEW*` flag is
//! denied too, and `clone3` answers `ENOSYS`; otherwise a process could make
//! a user namespace with `clone` and be root in it, `unshare` denied or not.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Denied whatever the capabilities: these load code into the kernel,
/// replace or stop it, reach into other processes or the host's kernel
/// state, or are obsolete interfaces kept only for old binaries.
/// `personality` stays allowed: some programs query it, and the kernel
/// itself limits what can be set.
pub const ALWAYS_DENIED: &[&str] = &[
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "bpf",
    "perf_event_open",
    "open_by_handle_at",
    "lookup_dcookie",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "quotactl",
    "iopl",
    "ioperm",
    "uselib",
    "nfsservctl",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
    "kcmp",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
];

/// Denied unless the service holds `CAP_SYS_TIME`.
pub const TIME_SYSCALLS: &[&str] = &[
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "stime",
];

/// Denied unless the service holds `CAP_SYS_ADMIN`.
pub const ADMIN_SYSCALLS: &[&str] = &["mount", "umount2", "pivot_root", "unshare", "setns"];

/// `CLONE_NEW*` flags `clone` may not use without `CAP_SYS_ADMIN`. Without
/// this, denying `unshare` would be for show: `clone(CLONE_NEWUSER)` needs
/// no capability and hands the child a user namespace in which it is root.
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The default filter for a service holding `caps` (`CAP_` names).
///
/// Denied calls fail with `EPERM`, as they would for a process lacking the
/// privilege, rather than killing the process: programs probe for
/// features and cope with a refusal.
pub fn default_profile(caps: &[String]) -> LinuxSeccomp {
    let has = |cap: &str| caps.iter().any(|c| c == cap);

    let mut denied: Vec<String> = ALWAYS_DENIED.iter().map(|s| (*s).to_owned()).collect();
    if !has("CAP_SYS_TIME") {
        denied.extend(TIME_SYSCALLS.iter().map(|s| (*s).to_owned()));
    }
    let admin = has("CAP_SYS_ADMIN");
    if !admin {
        denied.extend(ADMIN_SYSCALLS.iter().map(|s| (*s).to_owned()));
    }
    let mut rules = vec![errno_rule(denied, EPERM, None)];

    if !admin {
        // One rule per flag: a masked compare tests for equality, so "any of
        // these bits" is several rules, which seccomp ORs.
        for &flag in CLONE_NAMESPACE_FLAGS {
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(flag)
                .value_two(flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build();
            match arg {
                Ok(arg) => rules.push(errno_rule(vec!["clone".to_owned()], EPERM, Some(vec![arg]))),
                // Cannot happen (every field is set, and the builder has
                // defaults besides), but if oci-spec ever changes that,
                // refuse everything: the service fails to start, loudly,
                // instead of running with a hole in its filter.
                Err(_) => return deny_everything(),
            }
        }
        // clone3 passes its flags in memory, out of seccomp's sight. ENOSYS
        // makes the C library fall back to clone, which the rules above see.
        rules.push(errno_rule(vec!["clone3".to_owned()], ENOSYS, None));
    }

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActAllow)
        .set_architectures(Some(architectures()))
        .set_syscalls(Some(rules));
    profile
}

/// x86-64 plus the two other ABIs an x86-64 kernel runs, so a 32-bit or x32
/// binary cannot step around the rules.
fn architectures() -> Vec<Arch> {
    vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
}

fn deny_everything() -> LinuxSeccomp {
    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(EPERM))
        .set_architectures(Some(architectures()));
    profile
}

fn errno_rule(names: Vec<String>, errno: u32, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names)
        .set_action(LinuxSeccompAction::ScmpActErrno)
        .set_errno_ret(Some(errno))
        .set_args(args);
    rule
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn denied_unconditionally(profile: &LinuxSeccomp) -> Vec<String> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.args().is_none() && r.errno_ret() == Some(EPERM))
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn without_capabilities() {
        let profile = default_profile(&[]);
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
        let denied = denied_unconditionally(&profile);
        for name in ALWAYS_DENIED
            .iter()
            .chain(TIME_SYSCALLS)
            .chain(ADMIN_SYSCALLS)
        {
            assert!(denied.iter().any(|d| d == name), "{name} should be denied");
        }
        assert!(!denied.iter().any(|d| d == "personality"));
        let clone_rules = profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names() == &["clone".to_owned()])
            .count();
        assert_eq!(clone_rules, CLONE_NAMESPACE_FLAGS.len());
    }

    #[test]
    fn capabilities_lift_their_syscalls() {
        let caps = vec!["CAP_SYS_ADMIN".to_owned(), "CAP_SYS_TIME".to_owned()];
        let profile = default_profile(&caps);
        let all: Vec<String> = profile
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names().clone())
            .collect();
        for name in TIME_SYSCALLS
            .iter()
            .chain(ADMIN_SYSCALLS)
            .chain(&["clone", "clone3"])
        {
            assert!(!all.iter().any(|d| d == name), "{name} should be allowed");
        }
        assert!(all.iter().any(|d| d == "reboot"));
    }
}

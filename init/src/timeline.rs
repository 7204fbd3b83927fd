//! The boot's phases as they end, in ms since the kernel started
//! (CLOCK_BOOTTIME), shown in one line after the ready line so a boot can be
//! broken down without a shell (`make bench` takes medians of it). Stage 1
//! hands its marks to stage 2 on the exec's command line.

use std::sync::Mutex;

/// The argument that carries stage 1's marks to stage 2.
pub const ARG: &str = "--timeline=";
/// Enough for every phase and a few dozen services; later marks are dropped.
const MAX: usize = 48;

#[derive(Default)]
struct Marks {
    list: Vec<(String, u64)>,
    /// The line went out: nothing more is kept.
    closed: bool,
}

impl Marks {
    fn mark(&mut self, phase: &str, ms: u64) {
        if !self.closed && self.list.len() < MAX {
            self.list.push((phase.replace([' ', '=', ','], "_"), ms));
        }
    }

    fn arg(&self) -> String {
        let marks: Vec<String> = self.list.iter().map(|(p, ms)| format!("{p}={ms}")).collect();
        format!("{ARG}{}", marks.join(","))
    }

    fn take_arg(&mut self, args: &[String]) {
        let Some(list) = args.iter().find_map(|a| a.strip_prefix(ARG)) else { return };
        for (phase, ms) in list.split(',').filter_map(|m| m.split_once('=')) {
            if let Ok(ms) = ms.parse() {
                self.mark(phase, ms);
            }
        }
    }

    fn line(&mut self) -> String {
        self.closed = true;
        let mut s = String::from("boot timeline ms:");
        for (p, ms) in std::mem::take(&mut self.list) {
            s.push_str(&format!(" {p}={ms}"));
        }
        s
    }
}

static MARKS: Mutex<Marks> = Mutex::new(Marks { list: Vec::new(), closed: false });

/// Records that `phase` ended now (until the line went out).
pub fn mark(phase: &str) {
    mark_at(phase, crate::sys::boottime_ms());
}

/// Records that `phase` ended at `ms`.
pub fn mark_at(phase: &str, ms: u64) {
    if let Ok(mut m) = MARKS.lock() {
        m.mark(phase, ms);
    }
}

/// Stage 1's marks as one argument for stage 2.
pub fn arg() -> String {
    MARKS.lock().map(|m| m.arg()).unwrap_or_default()
}

/// Takes stage 1's marks from stage 2's arguments; a garbled one is skipped.
pub fn take_arg(args: &[String]) {
    if let Ok(mut m) = MARKS.lock() {
        m.take_arg(args);
    }
}

/// `boot timeline ms: phase=ms ...`, once; the marks are freed.
pub fn line() -> String {
    MARKS.lock().map(|mut m| m.line()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_cross_the_exec_and_come_out_in_one_line() {
        let mut stage1 = Marks::default();
        stage1.mark("stage1 modules", 120);
        stage1.mark("verity", 300);
        let a = stage1.arg();
        assert_eq!(a, format!("{ARG}stage1_modules=120,verity=300"));
        let mut stage2 = Marks::default();
        stage2.take_arg(&["--stage2".into(), a, format!("{ARG}x=y,bad")]);
        stage2.mark("ready", 2000);
        assert_eq!(stage2.line(), "boot timeline ms: stage1_modules=120 verity=300 ready=2000");
        stage2.mark("later", 3000);
        assert_eq!(stage2.line(), "boot timeline ms:", "the marks are given once");
    }
}

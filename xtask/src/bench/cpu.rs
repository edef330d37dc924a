//! Where the CPU goes: user + system time of each server's process tree, read from `/proc`
//! before and after a scenario, so the report can say how many CPU microseconds each part of
//! the system spends per request.

use std::collections::HashMap;

/// Linux reports process times in clock ticks of `USER_HZ`, which is 100 on every supported
/// architecture.
const TICKS_PER_SEC: f64 = 100.0;

/// Named process trees (a server's pid and every descendant: PostgreSQL's backends, say).
#[derive(Debug, Default)]
pub struct CpuMeter {
    groups: Vec<(String, Vec<u32>)>,
    /// Counted without their descendants (the bench process, whose children are the servers).
    alone: Vec<u32>,
}

impl CpuMeter {
    /// Count `pid`'s tree under `group` (several pids may share a group: replicas).
    pub fn add(&mut self, group: &str, pid: u32) {
        match self.groups.iter_mut().find(|(g, _)| g == group) {
            Some((_, pids)) => pids.push(pid),
            None => self.groups.push((group.to_owned(), vec![pid])),
        }
    }

    /// Count `pid` alone under `group`, not its children.
    pub fn add_alone(&mut self, group: &str, pid: u32) {
        self.alone.push(pid);
        self.add(group, pid);
    }

    /// CPU seconds used so far by each group.
    pub fn snapshot(&self) -> Vec<(String, f64)> {
        let procs = processes();
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (pid, (ppid, _)) in &procs {
            children.entry(*ppid).or_default().push(*pid);
        }
        self.groups
            .iter()
            .map(|(group, roots)| {
                let mut ticks = 0u64;
                let mut stack = roots.clone();
                while let Some(pid) = stack.pop() {
                    ticks += procs.get(&pid).map_or(0, |(_, t)| *t);
                    if !self.alone.contains(&pid) {
                        stack.extend(children.get(&pid).into_iter().flatten());
                    }
                }
                (group.clone(), ticks as f64 / TICKS_PER_SEC)
            })
            .collect()
    }
}

/// CPU microseconds per request of each group between two snapshots, busiest first.
pub fn per_request(before: &[(String, f64)], after: &[(String, f64)], requests: u64) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = before
        .iter()
        .zip(after)
        .map(|((group, b), (_, a))| (group.clone(), (a - b) * 1e6 / requests.max(1) as f64))
        .filter(|(_, us)| *us >= 1.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// pid → (ppid, utime + stime in ticks) of every process.
fn processes() -> HashMap<u32, (u32, u64)> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some(parsed) = parse_stat(&stat) {
            out.insert(pid, parsed);
        }
    }
    out
}

/// `/proc/<pid>/stat`: the command name is in parentheses and may contain spaces; after it come
/// state (3), ppid (4), … utime (14), stime (15).
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let line = "4242 (tokio worker 1) S 17 4242 17 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 8 0 123 0 0";
        assert_eq!(parse_stat(line), Some((17, 290)));
    }

    #[test]
    fn this_process_tree_is_measured() {
        let mut meter = CpuMeter::default();
        meter.add_alone("me", std::process::id());
        let before = meter.snapshot();
        // Burn a little CPU so the tick counter moves.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = meter.snapshot();
        assert!(after[0].1 > before[0].1, "{before:?} → {after:?}");
        assert_eq!(per_request(&before, &after, 1)[0].0, "me");
    }
}

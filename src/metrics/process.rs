//! The process's own figures under the names every Prometheus client library gives them (`process_*`), read from
//! `/proc/self` at scrape time: nothing is kept between scrapes.

/// One reading.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// User and system CPU time spent.
    pub cpu_seconds: f64,
    /// Resident memory.
    pub resident_bytes: u64,
    /// Virtual memory.
    pub virtual_bytes: u64,
    /// Open file descriptors (sockets included).
    pub open_fds: u64,
    /// The soft limit on them.
    pub max_fds: u64,
    /// Start time since the epoch.
    pub start_time_seconds: f64,
    /// OS threads.
    pub threads: u64,
}

/// Reads `/proc/self`; `None` where there is no procfs.
pub fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may itself hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (`state`) of proc(5)'s numbering.
    let field = |n: usize| fields.get(n.checked_sub(3)?).and_then(|v| v.parse::<u64>().ok());
    // SAFETY: sysconf and getrlimit only read process-wide values into the given memory.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let (ticks, page) = (u64::try_from(ticks).ok().filter(|t| *t > 0)?, u64::try_from(page).ok()?);
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    let max_fds = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => limit.rlim_cur,
        _ => 0,
    };
    // The boot time; hidden under systemd's ProcSubset=pid, then the start is counted back from the uptime.
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok()))
        .or_else(boot_from_uptime)?;
    Some(Sample {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks as f64,
        resident_bytes: field(24)?.saturating_mul(page),
        virtual_bytes: field(23)?,
        open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0),
        max_fds,
        start_time_seconds: boot + field(22)? as f64 / ticks as f64,
        threads: field(20)?,
    })
}

/// The boot time from the system's uptime and the clock, where `/proc/stat` cannot be read.
fn boot_from_uptime() -> Option<f64> {
    let mut uptime = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the given timespec only.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut uptime) } != 0 {
        return None;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
    Some(now - (uptime.tv_sec as f64 + uptime.tv_nsec as f64 / 1e9))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_reads_as_started_running_and_holding_memory_and_files() {
        let s = super::sample().expect("procfs");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
        assert!(s.start_time_seconds > 1.0e9 && s.start_time_seconds <= now + 1.0, "{s:?}");
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.open_fds >= 3 && s.max_fds >= s.open_fds && s.threads >= 1, "{s:?}");
    }

    #[test]
    fn the_boot_time_counted_back_from_the_uptime_is_the_kernels() {
        let btime: f64 = std::fs::read_to_string("/proc/stat")
            .expect("/proc/stat")
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
            .expect("btime");
        let counted = super::boot_from_uptime().expect("uptime");
        assert!((counted - btime).abs() < 2.0, "{counted} vs {btime}");
    }
}

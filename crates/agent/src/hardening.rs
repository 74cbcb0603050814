//! Process hardening for the agent: no core dumps, so a crash leaves no image
//! of its memory (the secret, a period's raw counts) on disk.

use crate::AgentError;

/// Turns core dumps off for this process: `RLIMIT_CORE` to zero on every Unix,
/// and on Linux `PR_SET_DUMPABLE` to 0, which also keeps other processes of the
/// same user from attaching a debugger. The systemd unit sets `LimitCORE=0`
/// and the launchd plist a zero core limit as well, before the process starts.
pub fn disable_core_dumps() -> Result<(), AgentError> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        let zero = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        setrlimit(Resource::Core, zero)
            .map_err(|e| AgentError::Config(format!("cannot turn core dumps off: {e}")))?;
        #[cfg(target_os = "linux")]
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
            .map_err(|e| AgentError::Config(format!("cannot turn core dumps off: {e}")))?;
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// One scenario per process: this changes process-wide state, so it runs in
    /// a child (the test binary re-executing itself with a filter).
    #[test]
    fn core_dumps_are_off_after_hardening() {
        if std::env::var_os("HUSH_HARDENING_CHILD").is_some() {
            super::disable_core_dumps().unwrap();
            let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
            assert!(
                limits
                    .lines()
                    .any(|l| l.starts_with("Max core file size") && l.contains(" 0 ")),
                "{limits}"
            );
            assert_eq!(
                rustix::process::dumpable_behavior().unwrap(),
                rustix::process::DumpableBehavior::NotDumpable
            );
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "hardening::tests::core_dumps_are_off_after_hardening",
            ])
            .env("HUSH_HARDENING_CHILD", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

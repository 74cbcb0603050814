//! One agent per home: an exclusive lock on a file in the data directory, held by
//! the running agent, so two agents never report the same period, and `forget`
//! knows whether it must ask a running agent instead of racing its writes.

use std::fs::File;
use std::io::{Read, Seek, Write};

use crate::durable::{private_dir, private_options};
use crate::{AgentError, AgentPaths};

/// The lock on an agent's home, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct HomeLock {
    _file: File,
}

impl HomeLock {
    /// Takes the lock, or says which process holds it.
    pub fn acquire(paths: &AgentPaths) -> Result<HomeLock, AgentError> {
        match Self::try_acquire(paths)? {
            Some(lock) => Ok(lock),
            None => Err(AgentError::Running(holder(paths))),
        }
    }

    /// Takes the lock if no other process holds it.
    pub fn try_acquire(paths: &AgentPaths) -> Result<Option<HomeLock>, AgentError> {
        private_dir(&paths.data)?;
        let mut file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(paths.lock())?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        // Who holds it, for the message a second agent prints.
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(Some(HomeLock { _file: file }))
    }
}

/// Whether the agent seems to run on this home: the lock file names a
/// process that exists. Takes no lock, not even a shared one for a moment,
/// so looking can never make an agent that is starting find its home taken.
/// A stale file whose process id was reused by another program reads as
/// running: this answers the person's page, not the lock.
pub fn held(paths: &AgentPaths) -> Result<bool, AgentError> {
    let mut text = String::new();
    match File::open(paths.lock()) {
        Ok(mut f) => {
            f.read_to_string(&mut text)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    // A process id, never a group's (kill(-n, 0) asks about a whole group).
    let Some(pid) = text.trim().parse::<i32>().ok().filter(|p| *p > 0) else {
        return Ok(false);
    };
    Ok(process_exists(pid))
}

#[cfg(unix)]
fn process_exists(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // It exists, and belongs to another user.
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

#[cfg(not(unix))]
fn process_exists(_pid: i32) -> bool {
    false
}

/// The process id the lock file names, in words.
fn holder(paths: &AgentPaths) -> String {
    let mut text = String::new();
    let pid = File::open(paths.lock())
        .and_then(|mut f| f.read_to_string(&mut text))
        .ok()
        .and_then(|_| text.trim().parse::<u32>().ok());
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let paths = AgentPaths::in_home(dir.path());
        assert!(!held(&paths).unwrap(), "no lock file yet");
        let first = HomeLock::acquire(&paths).unwrap();
        let err = HomeLock::acquire(&paths).unwrap_err().to_string();
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        assert!(HomeLock::try_acquire(&paths).unwrap().is_none());
        assert!(held(&paths).unwrap(), "this process holds it");
        drop(first);
        assert!(HomeLock::try_acquire(&paths).unwrap().is_some());
        // A lock file naming no living process: not running.
        std::fs::write(paths.lock(), format!("{}\n", i32::MAX)).unwrap();
        assert!(!held(&paths).unwrap());
    }
}

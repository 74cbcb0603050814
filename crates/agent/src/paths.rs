//! Where the agent keeps its configuration and data.

use std::path::{Path, PathBuf};

use crate::AgentError;

/// The agent's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPaths {
    /// The configuration file (TOML).
    pub config: PathBuf,
    /// The data directory: enrollment, ledger, secret, draw tags, outbox, sent log.
    pub data: PathBuf,
}

impl AgentPaths {
    /// Everything under one directory: `DIR/agent.toml` and `DIR/data/` (for
    /// tests, several agents on one machine, or a managed install).
    pub fn in_home(home: &Path) -> Self {
        AgentPaths {
            config: home.join("agent.toml"),
            data: home.join("data"),
        }
    }

    /// The platform's standard locations: XDG on Linux, Application Support on
    /// macOS, and on Windows the *local* AppData, never the roaming profile,
    /// which organizations copy to their servers.
    pub fn platform() -> Result<Self, AgentError> {
        let dirs = directories::ProjectDirs::from("org", "hush", "hush").ok_or_else(|| {
            AgentError::Config("no home directory to keep the agent's files in".into())
        })?;
        Ok(AgentPaths {
            config: dirs.config_dir().join("agent.toml"),
            data: dirs.data_local_dir().to_path_buf(),
        })
    }

    /// Enrollment record (collector, token, consent).
    pub fn enrollment(&self) -> PathBuf {
        self.data.join("enrollment.toml")
    }
    /// Budget ledger.
    pub fn ledger(&self) -> PathBuf {
        self.data.join("ledger.json")
    }
    /// The device secret that keys every permanent response (32 bytes, mode 0600).
    pub fn secret(&self) -> PathBuf {
        self.data.join("secret.key")
    }
    /// Keyed tags of the values that have permanent responses (tied to the secret).
    pub fn draws(&self) -> PathBuf {
        self.data.join("draws.bin")
    }
    /// Present while `forget` waits for the running agent to carry it out.
    pub fn forget_request(&self) -> PathBuf {
        self.data.join("forget.request")
    }
    /// Held by the running agent: one agent per home.
    pub fn lock(&self) -> PathBuf {
        self.data.join("agent.lock")
    }
    /// Reports waiting for upload, one file each.
    pub fn outbox(&self) -> PathBuf {
        self.data.join("outbox")
    }
    /// Log of every report that left (and every one the collector refused).
    pub fn sent_log(&self) -> PathBuf {
        self.data.join("sent.log")
    }
    /// The count ranges the collector offered and the ones in use, with
    /// when they were adopted (no value, only the collector's published steps).
    pub fn ranges(&self) -> PathBuf {
        self.data.join("ranges.toml")
    }

    /// Present while the person has paused the agent.
    pub fn paused(&self) -> PathBuf {
        self.data.join("paused")
    }
}

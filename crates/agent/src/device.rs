//! The device's secret and draw tags on disk: the secret is drawn from the
//! operating system once, written to a file created with mode 0600 and never
//! rewritten; `forget` deletes it with the tags, so a new secret's draws are
//! fresh and the ledger, which stays, charges them.

use hush_report::{DeviceMemory, DeviceSecret, DrawTags, Lifetime, SECRET_BYTES};
use rand::TryRng;

use crate::durable::{atomic_write, create_new, sync_dir};
use crate::{AgentError, AgentPaths};

/// Bytes from the operating system's generator.
pub fn os_random<const N: usize>() -> Result<[u8; N], AgentError> {
    let mut bytes = [0u8; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| AgentError::Config(format!("no operating-system randomness: {e}")))?;
    Ok(bytes)
}

/// The device secret, created on first use.
pub fn load_or_create_secret(paths: &AgentPaths) -> Result<DeviceSecret, AgentError> {
    let path = paths.secret();
    // Created exclusively: two processes racing here keep the first secret.
    create_new(&path, &os_random::<SECRET_BYTES>()?)?;
    let bytes = std::fs::read(&path)?;
    let bytes: [u8; SECRET_BYTES] = bytes.try_into().map_err(|b: Vec<u8>| {
        AgentError::Corrupt(format!(
            "{} holds {} bytes, not {SECRET_BYTES}",
            path.display(),
            b.len()
        ))
    })?;
    Ok(DeviceSecret::from_bytes(bytes))
}

/// Installs a given secret if the device has none yet (`Ok(false)` if it had
/// one): for reproducible simulations such as the demo. The agent makes its own
/// from the operating system.
pub fn install_secret(paths: &AgentPaths, secret: &DeviceSecret) -> Result<bool, AgentError> {
    Ok(create_new(&paths.secret(), secret.as_bytes())?)
}

/// The stored draw tags (none if there are none yet).
pub fn load_tags(paths: &AgentPaths) -> Result<DrawTags, AgentError> {
    match std::fs::read(paths.draws()) {
        Ok(bytes) => DrawTags::from_bytes(&bytes)
            .map_err(|e| AgentError::Corrupt(format!("{}: {e}", paths.draws().display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DrawTags::default()),
        Err(e) => Err(e.into()),
    }
}

/// Everything the privatizer needs from disk: the secret, its tags, and the
/// spending history (which the ledger keeps).
pub fn load_memory(paths: &AgentPaths, lifetime: Lifetime) -> Result<DeviceMemory, AgentError> {
    Ok(DeviceMemory {
        secret: load_or_create_secret(paths)?,
        tags: load_tags(paths)?,
        lifetime,
    })
}

/// Writes the tags durably.
pub fn save_tags(paths: &AgentPaths, tags: &DrawTags) -> Result<(), AgentError> {
    atomic_write(&paths.draws(), &tags.to_bytes())?;
    Ok(())
}

/// Deletes the secret and its tags: the next report draws a new secret, and
/// every value's permanent response is drawn (and charged) afresh.
pub fn rotate(paths: &AgentPaths) -> Result<(), AgentError> {
    for file in [paths.draws(), paths.secret()] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if paths.data.exists() {
        sync_dir(&paths.data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_made_once_and_rotated_by_forget() {
        let dir = tempfile::tempdir().unwrap();
        let paths = AgentPaths::in_home(dir.path());
        let a = load_or_create_secret(&paths).unwrap();
        assert_eq!(load_or_create_secret(&paths).unwrap(), a);
        rotate(&paths).unwrap();
        assert_ne!(load_or_create_secret(&paths).unwrap(), a);
        std::fs::write(paths.secret(), b"short").unwrap();
        assert!(matches!(
            load_or_create_secret(&paths),
            Err(AgentError::Corrupt(_))
        ));
    }
}

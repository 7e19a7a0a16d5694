//! Where a command gets the session key: `--key-file`, the MPC_PIPE_SESSION_KEY
//! environment variable, or `--key` (in that order). The key authenticates the parties'
//! handshake, keys their channels and MACs their material files. Depends on transport
//! (SessionKey), runtime::process (KEY_ENV), error.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Result};
use crate::runtime::process::KEY_ENV;
use crate::transport::SessionKey;

#[derive(Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// Session key, 64 hex digits (prefer --key-file or MPC_PIPE_SESSION_KEY: a command
    /// line is visible to other users in the process list).
    #[arg(long)]
    pub key: Option<String>,
    /// File holding the session key as 64 hex digits; it must not be readable by group or
    /// others (chmod 600).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

/// Cap on a key file: 64 hex digits and a newline, with room for a CRLF.
const MAX_KEY_FILE_BYTES: u64 = 256;

/// Refuse a key file that others may read or that is not a regular file, as ssh refuses
/// such a private key: the key authenticates the whole session, keys its channels and
/// MACs its material.
fn refuse_shared_key_file(f: &Path) -> Result<()> {
    let meta = std::fs::metadata(f)
        .map_err(|e| Error::Config(format!("cannot read --key-file {}: {e}", f.display())))?;
    if !meta.is_file() {
        return Err(Error::Config(format!(
            "--key-file {} is not a regular file",
            f.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(Error::Config(format!(
                "--key-file {} may be read by group or others (mode {:o}); run chmod 600 on it",
                f.display(),
                mode & 0o777
            )));
        }
    }
    Ok(())
}

/// Write a fresh key to `f`, created owner-only, never over an existing file nor through
/// a symlink.
fn create_key_file(f: &Path) -> Result<SessionKey> {
    use std::io::Write;
    let key = SessionKey::fresh();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = opts
        .open(f)
        .map_err(|e| Error::Config(format!("cannot create --key-file {}: {e}", f.display())))?;
    writeln!(file, "{}", key.to_hex())
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::Config(format!("cannot write --key-file {}: {e}", f.display())))?;
    Ok(key)
}

impl KeyArgs {
    /// The session key, or None when no source gives one.
    pub fn get(&self) -> Result<Option<SessionKey>> {
        if let Some(f) = &self.key_file {
            refuse_shared_key_file(f)?;
            let s = crate::error::read_capped(f, MAX_KEY_FILE_BYTES, "--key-file")?;
            return SessionKey::from_hex(&s)
                .map(Some)
                .map_err(|e| Error::Config(format!("--key-file {}: {e}", f.display())));
        }
        if let Ok(s) = std::env::var(KEY_ENV) {
            return SessionKey::from_hex(&s)
                .map(Some)
                .map_err(|e| Error::Config(format!("{KEY_ENV}: {e}")));
        }
        self.key
            .as_deref()
            .map(|s| SessionKey::from_hex(s).map_err(|e| Error::Config(format!("--key: {e}"))))
            .transpose()
    }

    /// The session key; `why` says what needs it when none is given.
    pub fn require(&self, why: &str) -> Result<SessionKey> {
        self.get()?.ok_or_else(|| {
            Error::Config(format!(
                "{why} needs the session key: give --key-file FILE, set {KEY_ENV}, or give --key"
            ))
        })
    }

    /// As `require`, but a `--key-file` that does not exist yet is created with a fresh
    /// key (how `mpc-pipe offline` starts a session).
    pub fn get_or_create(&self, why: &str) -> Result<SessionKey> {
        match &self.key_file {
            Some(f) if std::fs::symlink_metadata(f).is_err() => create_key_file(f),
            _ => self.require(why),
        }
    }
}

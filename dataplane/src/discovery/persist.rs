//! The last good snapshot on disk, so a data plane restarts serving without a control plane.

use std::path::{Path, PathBuf};
use switchboard_config::{Snapshot, SnapshotError};

/// File name of the persisted snapshot inside the state directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// Why a persisted snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: SnapshotError,
    },
}

/// Reads and checks the snapshot in `dir` (None when there is none yet).
pub fn load_snapshot(dir: &Path) -> Result<Option<Snapshot>, PersistError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PersistError::Io { path, source }),
    };
    Snapshot::decode(&bytes)
        .map(Some)
        .map_err(|source| PersistError::Invalid { path, source })
}

/// Writes `snapshot` to `dir` atomically (temp file + rename): a crash never leaves half a file.
/// The file is readable by its owner only: it holds the session key and upstream credentials.
pub fn save_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<(), PersistError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(&snapshot.encode()).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    let path = dir.join(SNAPSHOT_FILE);
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load_snapshot(dir.path()).expect("empty dir").is_none());
        let mut snap = Snapshot::default();
        snap.version = snap.content_version();
        save_snapshot(dir.path(), &snap).expect("save");
        assert_eq!(load_snapshot(dir.path()).expect("load"), Some(snap));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SNAPSHOT_FILE))
            .expect("saved")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may read a snapshot");
        std::fs::write(dir.path().join(SNAPSHOT_FILE), b"{\"version\":\"x\"}").expect("corrupt");
        let err = load_snapshot(dir.path()).expect_err("corrupt file is refused");
        assert!(
            err.to_string().contains("does not match its content"),
            "{err}"
        );
    }
}

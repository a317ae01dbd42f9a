//! Crash-safe file writes: a reader sees either the old file or the complete new one, never half.
//!
//! What it does: [`write_atomically`] writes to a unique temporary name next to the target
//! (`<name>.tmp-<pid>-<random>`, see [`temp_path_for`]), flushes it to disk, renames it over the
//! target and then syncs the folder. The parent folder is created if needed. If the writer fails
//! (or panics), the temporary file is removed and the target is left untouched.
//!
//! What it does not: lock anything. Two processes writing the same target both succeed and the
//! last rename wins; each reader still sees one complete file. Temporary files left behind by a
//! killed process are not cleaned up here (their names end in `.tmp-<pid>-<random>`, so readers
//! that look for `*.csv`, `*.txt` or `*.h5` never pick them up).

use crate::error::{FormatError, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// How many fresh temporary names to try before giving up (a clash needs the same pid and the
/// same 64 random bits, so more than one attempt is practically never needed).
const TEMP_ATTEMPTS: usize = 16;

/// A unique temporary path in the folder of `path`: `<name>.tmp-<pid>-<16 hex digits>`.
///
/// Being in the same folder, it can be renamed over `path` atomically. The HDF5 cache uses it to
/// create its file under this name and rename it when complete.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let tag: u64 = rand::random();
    path.with_file_name(format!("{name}.tmp-{}-{tag:016x}", std::process::id()))
}

/// Write `path` crash-safely: `f` writes the whole content to a temporary file next to `path`,
/// which is synced to disk and renamed over `path` only if `f` succeeds.
///
/// Creates the parent folder. On any failure the target keeps its old content (or stays absent),
/// no temporary file remains, and the error names `path`.
pub fn write_atomically(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    if path.file_name().is_none() {
        return Err(FormatError::file(
            path,
            "cannot write here: the path does not end in a file name",
        ));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| FormatError::io(parent, e))?;
    let (temp, file) = create_temp(path)?;
    let guard = RemoveOnDrop(Some(temp.clone()));
    let written = (|| {
        let mut writer = BufWriter::new(file);
        f(&mut writer)?;
        let file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    written.map_err(|e| FormatError::io(path, e))?;
    guard.disarm();
    sync_folder(parent);
    Ok(())
}

/// Create a fresh temporary file next to `path` (never reusing an existing name).
fn create_temp(path: &Path) -> Result<(PathBuf, File)> {
    let mut last_error = None;
    for _ in 0..TEMP_ATTEMPTS {
        let temp = temp_path_for(path);
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(FormatError::io(&temp, e)),
        }
    }
    let e = last_error.unwrap_or_else(|| io::Error::other("no temporary name available"));
    Err(FormatError::io(path, e))
}

/// Removes the temporary file when dropped, unless disarmed after the rename. Also runs when the
/// writer closure panics.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(temp) = self.0.take() {
            // The temporary file may already be gone (renamed or never written); nothing to do then.
            let _ = fs::remove_file(temp);
        }
    }
}

/// Make the rename itself durable by syncing the folder (Unix). Best effort: some file systems
/// refuse to sync folders, and the rename has already happened, so a failure here is not an error.
fn sync_folder(folder: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = folder;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_creates_parent_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/out.txt");
        write_atomically(&target, |w| w.write_all(b"hello\n")).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "hello\n");
        write_atomically(&target, |w| w.write_all(b"second")).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "second");
        assert_eq!(names_in(&dir.path().join("a/b")), ["out.txt"]);
    }

    #[test]
    fn failing_writer_leaves_original_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        fs::write(&target, "original").unwrap();
        let err = write_atomically(&target, |w| {
            w.write_all(b"partial content")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("out.txt") && msg.contains("disk full"),
            "{msg}"
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "original");
        assert_eq!(names_in(dir.path()), ["out.txt"]);
    }

    #[test]
    fn failing_writer_creates_no_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("new.txt");
        assert!(write_atomically(&target, |_| Err(io::Error::other("no"))).is_err());
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn panicking_writer_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        fs::write(&target, "original").unwrap();
        let result = std::panic::catch_unwind(|| {
            let _ = write_atomically(&target, |w| {
                w.write_all(b"x")?;
                panic!("writer bug")
            });
        });
        assert!(result.is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "original");
        assert_eq!(names_in(dir.path()), ["out.txt"]);
    }

    #[test]
    fn temp_names_are_unique_siblings() {
        let target = Path::new("/data/cache/mae/video1.h5");
        let a = temp_path_for(target);
        let b = temp_path_for(target);
        assert_ne!(a, b);
        assert_eq!(a.parent(), target.parent());
        let name = a.file_name().unwrap().to_str().unwrap();
        let prefix = format!("video1.h5.tmp-{}-", std::process::id());
        assert!(name.starts_with(&prefix), "{name}");
        assert_eq!(name.len(), prefix.len() + 16);
    }

    #[test]
    fn rejects_path_without_file_name() {
        let err = write_atomically(Path::new("/"), |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("file name"), "{err}");
    }
}

//! The one error type of the file formats: every error names the file and, where there is one,
//! the line, and says what was wrong.

use std::path::{Path, PathBuf};

/// Result with a [`FormatError`].
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// What went wrong reading or writing one of the toolkit's files.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A line of a text file is malformed: `file:line: what is wrong`.
    #[error("{}:{line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and, where it helps, what to do.
        message: String,
    },
    /// The file as a whole is wrong (missing frames, wrong shape, mismatched attributes).
    #[error("{}: {message}", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong and, where it helps, what to do.
        message: String,
    },
    /// The operating system refused to read or write the file.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error (in the message, so not repeated as a source).
        cause: std::io::Error,
    },
    /// The HDF5 library failed on the file.
    #[error("{}: HDF5: {cause}", path.display())]
    Hdf5 {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, so not repeated as a source).
        cause: hdf5::Error,
    },
    /// A value that is not a valid video id (names only: no separators, `..`, control characters).
    #[error("invalid video id {id:?}: {reason}")]
    VideoId {
        /// The rejected text.
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

impl FormatError {
    /// A malformed line.
    pub fn line(path: &Path, line: usize, message: impl Into<String>) -> Self {
        Self::Line {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// A whole-file problem.
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// An I/O error on a path.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            cause: source,
        }
    }

    /// An HDF5 error on a path.
    pub fn hdf5(path: &Path, source: hdf5::Error) -> Self {
        Self::Hdf5 {
            path: path.to_path_buf(),
            cause: source,
        }
    }
}

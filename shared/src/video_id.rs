//! Video ids: names, never paths, so that a hostile annotation file cannot make the tool read or
//! write outside its folders.

use crate::error::{FormatError, Result};
use std::fmt;

/// A validated video id such as `1-30-1280x720` or `video3_left`.
///
/// Rejected: the empty string, `.` and `..`, path separators (`/`, `\`), control characters,
/// a leading `-` (it would read as a command-line flag), and names longer than 255 bytes.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct VideoId(String);

impl VideoId {
    /// Validate a video id.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("empty")
        } else if id == "." || id == ".." {
            Some("`.` and `..` are not names")
        } else if id.contains(['/', '\\']) {
            Some("contains a path separator; a video id is a folder name, not a path")
        } else if id.chars().any(char::is_control) {
            Some("contains a control character")
        } else if id.starts_with('-') {
            Some("starts with `-`")
        } else if id.len() > 255 {
            Some("longer than 255 bytes")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(FormatError::VideoId { id, reason }),
            None => Ok(Self(id)),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VideoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for VideoId {
    type Error = FormatError;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<VideoId> for String {
    fn from(v: VideoId) -> String {
        v.0
    }
}

impl std::str::FromStr for VideoId {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_aff_wild2_names() {
        for ok in ["1-30-1280x720", "video10_1_right", "118-30-640x480", "a.b"] {
            assert_eq!(VideoId::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_paths_and_hostile_names() {
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "x\ny",
            "-rf",
            "nul\0",
        ] {
            assert!(VideoId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(VideoId::new("x".repeat(256)).is_err());
    }
}

//! Frame references as the ABAW files write them: `video/00001.jpg` (5-digit, 1-based frame number).
//!
//! What it does: parse and print the image names of annotation, test-list and submission files,
//! with the video id validated by [`VideoId::new`] (so `../x/00001.jpg` is an error).
//!
//! What it does not: look at the disk. The extension is not kept: `.png` is accepted when
//! parsing, and [`FrameRef::image_name`] always writes `.jpg`, as the challenge files do.

use crate::video_id::VideoId;
use std::fmt;

/// One frame of one video, e.g. `1-30-1280x720/00042.jpg` = video `1-30-1280x720`, frame 42.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameRef {
    /// The video.
    pub video: VideoId,
    /// Frame number as in the file name, 1-based.
    pub frame: u32,
}

impl FrameRef {
    /// Parse `video/00001.jpg` (or `.png`). The number must be written as the challenge writes
    /// it: zero-padded to 5 digits, at least 1. The message says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((video, name)) = s.rsplit_once('/') else {
            return Err(format!("image {s:?} is not of the form video/00001.jpg"));
        };
        let video = VideoId::new(video).map_err(|e| format!("image {s:?}: {e}"))?;
        let Some((digits, ext)) = name.rsplit_once('.') else {
            return Err(format!(
                "image {s:?}: file name {name:?} has no .jpg or .png extension"
            ));
        };
        if ext != "jpg" && ext != "png" {
            return Err(format!("image {s:?}: extension {ext:?} is not jpg or png"));
        }
        let frame: u32 = match digits.parse() {
            Ok(n) if digits.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(format!(
                    "image {s:?}: {digits:?} is not a frame number like 00001"
                ))
            }
        };
        if frame == 0 {
            return Err(format!("image {s:?}: frame numbers start at 1 (00001)"));
        }
        if digits != format!("{frame:05}") {
            return Err(format!(
                "image {s:?}: frame number {digits:?} should be written {frame:05} (zero-padded to 5 digits)"
            ));
        }
        Ok(Self { video, frame })
    }

    /// The image name as in ABAW files: `video/00001.jpg`.
    pub fn image_name(&self) -> String {
        format!("{}/{}", self.video, frame_file_name(self.frame))
    }
}

impl fmt::Display for FrameRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.video, frame_file_name(self.frame))
    }
}

impl std::str::FromStr for FrameRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// The file name of a frame in `cropped_aligned/<video>/`: `00001.jpg` for frame 1.
pub fn frame_file_name(frame: u32) -> String {
    format!("{frame:05}.jpg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_image_names() {
        let f = FrameRef::parse("1-30-1280x720/00042.jpg").unwrap();
        assert_eq!(f.video.as_str(), "1-30-1280x720");
        assert_eq!(f.frame, 42);
        assert_eq!(f.image_name(), "1-30-1280x720/00042.jpg");
        assert_eq!(f.to_string(), "1-30-1280x720/00042.jpg");
        let p = FrameRef::parse("video3_left/00007.png").unwrap();
        assert_eq!((p.video.as_str(), p.frame), ("video3_left", 7));
        assert_eq!(p.image_name(), "video3_left/00007.jpg");
        let big = FrameRef::parse("v/123456.jpg").unwrap();
        assert_eq!(big.frame, 123_456);
        assert_eq!(big.image_name(), "v/123456.jpg");
    }

    #[test]
    fn frame_file_names_are_zero_padded() {
        assert_eq!(frame_file_name(1), "00001.jpg");
        assert_eq!(frame_file_name(12345), "12345.jpg");
        assert_eq!(frame_file_name(100_000), "100000.jpg");
    }

    #[test]
    fn rejects_malformed_and_hostile_names() {
        let cases = [
            ("00001.jpg", "not of the form"),
            ("../x/00001.jpg", "path separator"),
            ("../00001.jpg", "`.` and `..`"),
            ("/00001.jpg", "empty"),
            ("v/00001.gif", "not jpg or png"),
            ("v/00001", "no .jpg or .png"),
            ("v/0000a.jpg", "not a frame number"),
            ("v/-0001.jpg", "not a frame number"),
            ("v/00000.jpg", "start at 1"),
            ("v/1.jpg", "should be written 00001"),
            ("v/000001.jpg", "should be written 00001"),
            ("v/99999999999.jpg", "not a frame number"),
        ];
        for (text, expected) in cases {
            let err = FrameRef::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn orders_by_video_then_frame() {
        let mut v: Vec<FrameRef> = ["b/00001.jpg", "a/00010.jpg", "a/00002.jpg"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let names: Vec<String> = v.iter().map(FrameRef::image_name).collect();
        assert_eq!(names, ["a/00002.jpg", "a/00010.jpg", "b/00001.jpg"]);
    }
}

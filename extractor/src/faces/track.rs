//! Which detected face of a frame belongs to which track.
//!
//! What it does: [`FaceTracker::Single`] follows one face through a video: the largest box in
//! the first frame, then in each frame the detection with the highest IoU with the previous
//! frame's face; after a gap (a frame without any face) it starts again from the largest face.
//! When every detection has IoU 0 with the previous face (a cut to another shot), the largest one
//! is taken too: a choice of ours where the issue is silent. [`FaceTracker::All`] (`--all-faces`)
//! keeps every face: detections are matched to the tracks of the previous frame greedily by
//! decreasing IoU (a match needs IoU >= [`MATCH_IOU`]); an unmatched detection starts a new
//! track (numbered in order of appearance, largest first within a frame), and a track not seen
//! in a frame ends.
//!
//! What it does not: predict motion (no Kalman filter), re-identify a face after a gap, or
//! look at appearance: only boxes.

use super::mtcnn::Face;

/// The IoU an `--all-faces` detection needs with a track's previous box to continue it.
pub const MATCH_IOU: f32 = 0.3;

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (0 when either is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Index of the largest face (first on ties), `None` if there is none.
fn largest(faces: &[Face]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, f) in faces.iter().enumerate() {
        if best.is_none_or(|b| f.area() > faces[b].area()) {
            best = Some(i);
        }
    }
    best
}

/// Track state across the frames of one video.
#[derive(Debug, Clone)]
pub enum FaceTracker {
    /// One face per frame.
    Single {
        /// The previous frame's chosen box, `None` at the start and after a gap.
        previous: Option<[f32; 4]>,
    },
    /// Every face, each in its own track.
    All {
        /// `(track id, box)` of the faces of the previous frame.
        active: Vec<(usize, [f32; 4])>,
        /// The id the next new track gets.
        next_id: usize,
    },
}

impl FaceTracker {
    /// A tracker following one face.
    pub fn single() -> Self {
        FaceTracker::Single { previous: None }
    }

    /// A tracker keeping every face.
    pub fn all() -> Self {
        FaceTracker::All {
            active: Vec::new(),
            next_id: 0,
        }
    }

    /// The faces of the next frame that are kept, as `(track id, index into faces)`. A single
    /// tracker returns at most one, with track id 0.
    pub fn assign(&mut self, faces: &[Face]) -> Vec<(usize, usize)> {
        match self {
            FaceTracker::Single { previous } => {
                let chosen = match previous {
                    None => largest(faces),
                    Some(prev) => {
                        let mut best: Option<(usize, f32)> = None;
                        for (i, f) in faces.iter().enumerate() {
                            let o = iou(prev, &f.bbox);
                            if o > 0.0 && best.is_none_or(|(_, b)| o > b) {
                                best = Some((i, o));
                            }
                        }
                        best.map(|(i, _)| i).or_else(|| largest(faces))
                    }
                };
                *previous = chosen.map(|i| faces[i].bbox);
                chosen.map(|i| vec![(0, i)]).unwrap_or_default()
            }
            FaceTracker::All { active, next_id } => {
                let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
                for (t, (_, tb)) in active.iter().enumerate() {
                    for (i, f) in faces.iter().enumerate() {
                        let o = iou(tb, &f.bbox);
                        if o >= MATCH_IOU {
                            pairs.push((o, t, i));
                        }
                    }
                }
                pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
                let mut track_used = vec![false; active.len()];
                let mut face_track: Vec<Option<usize>> = vec![None; faces.len()];
                for (_, t, i) in pairs {
                    if !track_used[t] && face_track[i].is_none() {
                        track_used[t] = true;
                        face_track[i] = Some(active[t].0);
                    }
                }
                let mut new: Vec<usize> = (0..faces.len())
                    .filter(|i| face_track[*i].is_none())
                    .collect();
                new.sort_by(|&x, &y| faces[y].area().total_cmp(&faces[x].area()));
                for i in new {
                    face_track[i] = Some(*next_id);
                    *next_id += 1;
                }
                let mut out: Vec<(usize, usize)> = face_track
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.expect("every face has a track"), i))
                    .collect();
                out.sort();
                *active = out.iter().map(|&(t, i)| (t, faces[i].bbox)).collect();
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x1: f32, y1: f32, x2: f32, y2: f32) -> Face {
        Face {
            bbox: [x1, y1, x2, y2],
            score: 0.99,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 0.0, 30.0, 10.0]), 0.0);
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn the_single_track_starts_largest_then_follows_the_highest_iou_not_the_largest() {
        let mut t = FaceTracker::single();
        let small = face(0.0, 0.0, 20.0, 20.0);
        let big = face(100.0, 100.0, 160.0, 160.0);
        assert_eq!(
            t.assign(&[small, big]),
            [(0, 1)],
            "largest in the first frame"
        );
        // The big face moved a little; a bigger face appears elsewhere: the moved one is kept.
        let bigger = face(0.0, 100.0, 90.0, 190.0);
        let moved = face(104.0, 102.0, 164.0, 162.0);
        assert_eq!(t.assign(&[bigger, moved]), [(0, 1)]);
        assert_eq!(t.assign(&[moved, bigger]), [(0, 0)]);
    }

    #[test]
    fn after_a_gap_the_single_track_takes_the_new_largest_face() {
        let mut t = FaceTracker::single();
        let a = face(100.0, 100.0, 140.0, 140.0);
        let b = face(0.0, 0.0, 30.0, 30.0);
        assert_eq!(t.assign(&[a]), [(0, 0)]);
        assert_eq!(t.assign(&[]), []);
        // Without the gap, b (IoU 0 with a... ) would be compared by IoU; after it, by size.
        let c = face(98.0, 98.0, 120.0, 120.0);
        let d = face(0.0, 0.0, 60.0, 60.0);
        assert_eq!(t.assign(&[c, d, b]), [(0, 1)]);
        // and then the IoU rule again: c overlaps nothing of d, the face near d wins.
        let near_d = face(2.0, 2.0, 58.0, 58.0);
        assert_eq!(t.assign(&[near_d, a]), [(0, 0)]);
    }

    #[test]
    fn all_faces_keep_their_track_ids_and_new_faces_get_new_ones() {
        let mut t = FaceTracker::all();
        let left = face(0.0, 0.0, 40.0, 40.0);
        let right = face(100.0, 0.0, 150.0, 50.0);
        // right is larger: track 0; left: track 1.
        assert_eq!(t.assign(&[left, right]), [(0, 1), (1, 0)]);
        let left2 = face(2.0, 1.0, 42.0, 41.0);
        let right2 = face(103.0, 0.0, 153.0, 50.0);
        let third = face(200.0, 200.0, 230.0, 230.0);
        assert_eq!(t.assign(&[third, right2, left2]), [(0, 1), (1, 2), (2, 0)]);
        // left vanishes for a frame: its track ends; when it comes back it is a new track.
        assert_eq!(t.assign(&[right2]), [(0, 0)]);
        assert_eq!(t.assign(&[left2, right2]), [(0, 1), (3, 0)]);
    }
}

//! Deterministic splitting of the video list over N processes (`--shard K/N`, or a Slurm array).
//!
//! Shard K of N (K counted from 0) takes the videos at positions K, K+N, K+2N, ... of the list
//! sorted by video id, so the N shards are disjoint, cover every video, and balance counts.
//! Without `--shard`, a Slurm array task uses `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` of
//! `SLURM_ARRAY_TASK_COUNT`. It does not schedule or coordinate processes: the cache's atomic
//! per-video files are the only coordination needed.

use std::fmt;
use std::str::FromStr;

/// One shard of a deterministic split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, in 0..count.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole list (one shard of one).
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether the item at `position` of the sorted list belongs to this shard.
    pub fn contains(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// The items of this shard, keeping their order.
    pub fn select<T: Clone>(&self, sorted: &[T]) -> Vec<T> {
        sorted
            .iter()
            .enumerate()
            .filter(|(i, _)| self.contains(*i))
            .map(|(_, x)| x.clone())
            .collect()
    }

    /// The shard of a Slurm array task, read from the given environment lookup; `Ok(None)` when
    /// the process is not an array task.
    pub fn from_slurm(env: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, String> {
        let (Some(id), Some(count)) = (env("SLURM_ARRAY_TASK_ID"), env("SLURM_ARRAY_TASK_COUNT"))
        else {
            return Ok(None);
        };
        let num = |name: &str, v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{name}={v:?} is not a whole number"))
        };
        let id = num("SLURM_ARRAY_TASK_ID", &id)?;
        let count = num("SLURM_ARRAY_TASK_COUNT", &count)?;
        let min = match env("SLURM_ARRAY_TASK_MIN") {
            Some(m) => num("SLURM_ARRAY_TASK_MIN", &m)?,
            None => 0,
        };
        let index = id.checked_sub(min).ok_or_else(|| {
            format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}")
        })?;
        Shard::new(index, count).map(Some)
    }

    /// Validated constructor.
    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 {
            return Err("the shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard {index}/{count}: K counts from 0 and must be below N (use 0/{count} .. {}/{count}); \
                 for a Slurm array with ids from 1 set --array=1-{count} (SLURM_ARRAY_TASK_MIN is honoured)",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = shared::k_of_n::parse_k_of_n("--shard", "0/4", s)?;
        Shard::new(k, n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn shards_are_disjoint_and_cover_everything() {
        let items: Vec<usize> = (0..23).collect();
        let mut seen = vec![0; items.len()];
        for k in 0..4 {
            for i in Shard::new(k, 4).unwrap().select(&items) {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert_eq!(
            Shard::new(1, 4).unwrap().select(&items),
            vec![1, 5, 9, 13, 17, 21]
        );
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            "2/5".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 5 }
        );
        for bad in ["5/5", "1/0", "x/2", "3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn slurm_array_with_min() {
        let env: HashMap<&str, &str> = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]
        .into();
        let get = |k: &str| env.get(k).map(|v| v.to_string());
        assert_eq!(
            Shard::from_slurm(get).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert_eq!(Shard::from_slurm(|_| None).unwrap(), None);
    }
}

//! Open files: each pipeline holds a few descriptors (its connection, the sink's file and
//! lock, the state lock, the checkpoint and dead-letter files being written), so a process
//! with many pipelines can meet the soft limit, often 1,024, long before the hard one.
//! The soft limit is raised to the hard one at start, and a limit still too low for the
//! configuration is said once, with the fix, instead of failing later as "too many open
//! files".

/// Descriptors a pipeline may hold at once (counted generously).
const PER_PIPELINE: u64 = 8;
/// What the process holds besides its pipelines (runtime, admin API, logs, cache).
const BASE: u64 = 64;

/// Raises the soft open-file limit as far as allowed and warns if `pipelines` may still
/// need more.
pub fn raise_for(pipelines: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::debug!(limit, "open-file limit");
            if let Some(needed) = shortfall(pipelines, limit) {
                tracing::warn!(
                    pipelines,
                    limit,
                    needed,
                    "the open-file limit may be too low for this many pipelines; raise it \
                     (ulimit -n, or LimitNOFILE= for a systemd unit)"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read or raise the open-file limit"),
    }
}

/// How many descriptors `pipelines` may need, when `limit` is below that.
fn shortfall(pipelines: usize, limit: u64) -> Option<u64> {
    let needed = BASE + PER_PIPELINE * pipelines as u64;
    (limit < needed).then_some(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_pipelines_need_more_than_the_usual_soft_limit() {
        assert_eq!(shortfall(1000, 1024), Some(8064));
        assert_eq!(shortfall(1000, 20_000), None);
        assert_eq!(shortfall(1, 1024), None);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        raise_for(1);
        let (soft, hard) = rlimit::Resource::NOFILE.get().expect("readable limits");
        assert_eq!(soft, hard);
    }
}

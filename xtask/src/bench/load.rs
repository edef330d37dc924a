//! The load generator: `concurrency` tasks, each sending one request at a time for a fixed
//! duration (a closed loop, like wrk's connections), every latency recorded.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one measurement saw.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Run `request(task, n)` from `concurrency` tasks for `warmup` (not recorded) and then
/// `duration`. `request` answers whether the call succeeded as expected.
pub async fn closed_loop<F, Fut>(concurrency: usize, warmup: Duration, duration: Duration, request: F) -> Sample
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(16 * 1024);
            let mut errors = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= stop_at {
                    break;
                }
                let ok = request(task).await;
                if sent >= measure_from {
                    latencies.push(sent.elapsed().as_micros() as u32);
                    if !ok {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((latencies, e)) = task.await {
            all.extend(latencies);
            errors += e;
        }
    }
    all.sort_unstable();
    let pct = |p: f64| -> Duration {
        if all.is_empty() {
            return Duration::ZERO;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        Duration::from_micros(u64::from(all[i]))
    };
    Sample {
        requests: all.len() as u64,
        errors,
        rps: all.len() as f64 / duration.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

/// The run with the median throughput (its latencies, and whatever else was recorded with it,
/// go with it).
pub fn median<T: Clone>(mut samples: Vec<(Sample, T)>) -> (Sample, T) {
    samples.sort_by(|a, b| a.0.rps.total_cmp(&b.0.rps));
    samples[samples.len() / 2].clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_every_request_and_the_failures() {
        let sample = closed_loop(4, Duration::from_millis(20), Duration::from_millis(200), |task| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            task != 0
        })
        .await;
        assert!(sample.requests > 40, "{sample:?}");
        // Task 0 fails every time: about a quarter of the requests.
        assert!(sample.errors > 0 && sample.errors < sample.requests / 2, "{sample:?}");
        assert!(sample.p50 >= Duration::from_millis(2) && sample.p99 >= sample.p50, "{sample:?}");
    }

    #[test]
    fn median_picks_the_middle_throughput() {
        let s = |rps| Sample { requests: 0, errors: 0, rps, p50: Duration::ZERO, p99: Duration::ZERO };
        assert_eq!(median(vec![(s(3.0), 'c'), (s(1.0), 'a'), (s(2.0), 'b')]).1, 'b');
    }
}

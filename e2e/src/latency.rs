//! Latency summaries the benchmarks print.

/// The `p` quantile of sorted milliseconds (NaN when there are none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints `name: n, p50, p99, max` of the latencies `ms` next to the p99 target.
pub fn report(name: &str, mut ms: Vec<f64>, target_p99: f64) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms  (target p99 <= {target_p99} ms)",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

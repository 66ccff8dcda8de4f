//! Latency summaries the benchmarks print.

/// The `p` quantile of sorted milliseconds (NaN when there are none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints n, p50, p99 and max of `ms`, with the p99 target when there is one (a floor has none:
/// pass NaN).
pub fn report(name: &str, mut ms: Vec<f64>, target_p99: f64) {
    ms.sort_by(f64::total_cmp);
    let target = if target_p99.is_nan() { "the floor".to_string() } else { format!("target p99 <= {target_p99} ms") };
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms  ({target})",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

//! `cargo run --release --example model_bench_sysalloc [repeats]`: the same timings as
//! `model_bench` with the system allocator, to measure what mimalloc buys.

fn main() {
    let repeats = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("{}", semcorr::model::bench::model_bench(repeats));
}

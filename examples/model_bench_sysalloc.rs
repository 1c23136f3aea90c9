//! `cargo run --release --example model_bench_sysalloc [repeats]`: the timings of
//! `semcorr bench model` with the system allocator instead of mimalloc, to measure what the
//! allocator buys (an allocator is chosen per process, so this cannot be one run).

fn main() {
    let repeats = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("{}", semcorr::tools::bench_model::model_bench(repeats));
}

//! `cargo run --release --example model_bench [repeats]`: PointNet timings with mimalloc as
//! the global allocator (`model_bench_sysalloc` is the same with the system allocator).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let repeats = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("{}", semcorr::model::bench::model_bench(repeats));
}

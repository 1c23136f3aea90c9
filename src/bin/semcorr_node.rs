//! `semcorr_node`: the ROS 2 node (see the README's "ROS 2 node" section). Parameters come
//! from `--ros-args` (`-p name:=value`, `--params-file config/semcorr.yaml`).

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match semcorr::ros::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("semcorr_node cannot start: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! Runs the real-ROS tests (tests/ros/test_node.py: an rclpy peer talking to the built
//! `semcorr_node` over Fast DDS). Needs a ROS 2 environment: `source scripts/ros_env.sh`
//! (scripts/test.sh does it).
#![cfg(feature = "ros")]

use std::process::Command;

#[test]
fn semcorr_node_against_an_rclpy_peer() {
    let repo = env!("CARGO_MANIFEST_DIR");
    assert!(
        std::env::var_os("AMENT_PREFIX_PATH").is_some(),
        "no ROS 2 environment: run `source scripts/ros_env.sh` first"
    );
    let python = std::env::var("SEMCORR_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(python)
        .arg(format!("{repo}/tests/ros/test_node.py"))
        .env("SEMCORR_NODE_BIN", env!("CARGO_BIN_EXE_semcorr_node"))
        .env("SEMCORR_BIN", env!("CARGO_BIN_EXE_semcorr"))
        .status()
        .expect("running python3");
    assert!(status.success(), "the rclpy tests failed (output above)");
}

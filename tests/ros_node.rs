//! Runs the real-ROS tests (tests/ros/test_node.py: an rclpy peer talking to the built
//! `semcorr_node` over Fast DDS; tests/ros/test_interfaces.py: the vision_msgs and tf2_msgs
//! types it publishes). Needs a ROS 2 environment: `source scripts/ros_env.sh`
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

/// tests/ros/test_interfaces.py: vision_msgs and tf2_msgs (built by scripts/ros_env.sh where the
/// ROS 2 lacks them) have the official Jazzy type hashes, and rclpy peers can use them.
#[test]
fn interface_packages_match_the_official_types() {
    if std::env::var_os("AMENT_PREFIX_PATH").is_none() {
        eprintln!("skipped: no ROS 2 environment (run `source scripts/ros_env.sh` first)");
        return;
    }
    let repo = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("SEMCORR_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(python)
        .arg(format!("{repo}/tests/ros/test_interfaces.py"))
        .status()
        .expect("running python3");
    assert!(status.success(), "interface tests failed (output above)");
}

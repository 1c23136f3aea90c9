//! Training with the geodesic consistency loss (`semcorr train`).

mod augment;
pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod loss;
pub mod margins;
pub mod optim;
mod report;
mod seeded_init;
mod trainer;

pub use augment::{training_item, TrainingItem};
pub use checkpoint::{Checkpoint, EpochMetrics};
pub use config::TrainConfig;
pub use report::{CURVES_PNG, METRICS_CSV};
pub use trainer::{
    chosen_epoch, load_network, train, Network, TrainOutcome, BACKBONE_FILE, BEST_CHECKPOINT,
    LAST_CHECKPOINT,
};

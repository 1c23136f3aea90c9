//! Evaluation: mGE, PCK and baselines.

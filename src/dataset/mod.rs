//! KeypointNet-format datasets.

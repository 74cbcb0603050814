//! hush-stats

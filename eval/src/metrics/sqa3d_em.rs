//! SQA3D answer exact match EM and EM-R (docs/evaluation.md §2).

//! SQA3D language-based localisation (docs/evaluation.md §1).

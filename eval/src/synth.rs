//! Evaluation on held-out synthetic rooms.

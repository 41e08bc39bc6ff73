"""Layer 4, training: weight-sparse training (top-k projection, L0 and learning-rate schedules) and the
resumable trainer."""

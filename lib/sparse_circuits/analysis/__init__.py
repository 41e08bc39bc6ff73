"""Layer 8, analysis: comparing a circuit with its model (faithfulness metrics, attention and node roles,
generalization across seeds, controls, walkthrough statistics)."""

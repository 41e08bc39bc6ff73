"""Layer 10, app: the command line, the notebook runner, README reports, claim verdicts and the shared
experiment steps that notebooks call."""

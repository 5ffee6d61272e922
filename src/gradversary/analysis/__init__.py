"""Analyses of trained runs, composed from the engine, attacks, selection and reports:
robustness under attack, feature shift (PAD, embeddings), step times."""

"""Few-shot rankers: fit on K measured architectures, score the rest (rank, blend, suggest, latency limits)."""

"""Tasks (one metric of one table, named by a spec), the tables behind them, and oracles."""

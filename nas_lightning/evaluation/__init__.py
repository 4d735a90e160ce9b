"""Training-backed evaluation of NB201 cells: the network, datasets, training recipes and a result store."""

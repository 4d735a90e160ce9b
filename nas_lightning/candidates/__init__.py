"""Candidate networks trained for real: the NB201 network, datasets, training recipes, the result store and Ray workers."""

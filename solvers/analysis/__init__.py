"""Analyses of a graph that solvers share: reachability bitsets (``reach``), memory-aware
operator orders (``schedule``) and the traffic lower bound (``traffic_bound``)."""
